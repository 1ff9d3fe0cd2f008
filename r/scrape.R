# scrape.R: the R reference parser of planespotters.net listing pages (rvest/xml2), a 1:1 port
# of scrape/parse.py (see its module docstring for the rules) into the same CSV columns as
# dataset/schema.py. Only the parse step: crawling stays in Scrapy.
#
# As a script:   Rscript r/scrape.R FILE [--base-url URL]      (CSV on stdout, like
#                python -m scrape parse FILE [--base-url URL])
# As a library:  source("r/scrape.R"); ps_parse_listing(html, base_url)  -> data.frame
#
# The label table is the very file the Python side reads (dataset/type_rules.json), found next
# to this file (../dataset/type_rules.json) or at PLANESPOTTER_TYPE_RULES.

suppressPackageStartupMessages({
  library(xml2)
  library(rvest)
  library(jsonlite)
})

#: Columns of the shared metadata CSV, in order (dataset/schema.py COLUMNS).
PS_COLUMNS <- c("image_path", "sha256", "manufacturer", "icao_type", "sub_model", "airline",
                "source", "source_id", "page_url", "image_url", "registration", "msn",
                "manufacturer_raw", "type_raw", "location", "date", "photographer", "attribution",
                "licence", "width", "height", "phash", "near_duplicate_of", "split", "family",
                "crop_box")

#: Fields filled by ps_parse_listing (scrape/parse.py PARSED_FIELDS).
PS_PARSED_FIELDS <- c("source_id", "page_url", "image_url", "registration", "msn", "airline",
                      "manufacturer_raw", "type_raw", "location", "date", "photographer",
                      "manufacturer", "icao_type", "sub_model")

PS_SOURCE <- "planespotters"
PS_LICENCE <- "LicenseRef-All-Rights-Reserved"
PS_DEFAULT_BASE_URL <- "https://www.planespotters.net/"
PS_CARD_XPATH <- paste0(
  "//*[@data-photo-url]",
  " | //a[contains(@href, '/photo/')][.//img[@alt]]",
  "[not(ancestor::*[@data-photo-url])][not(ancestor::footer)][not(ancestor::nav)]")

# Python's str.isspace() set: PCRE's Unicode \s plus U+001C..U+001F.
.PS_WS <- "(*UCP)[\\s\\x{1c}-\\x{1f}]+"

#' Collapse every run of Unicode whitespace to one space and strip both ends
#' (dataset.labels.squish; R's stringr::str_squish). NULL/NA/character(0) -> "".
ps_squish <- function(x) {
  if (length(x) == 0L || is.na(x[1])) return("")
  x <- enc2utf8(as.character(x[1]))
  x <- gsub(.PS_WS, " ", x, perl = TRUE)
  sub("^ ", "", sub(" $", "", x))
}

# Python str.strip() (Unicode whitespace at both ends).
.py_strip <- function(x) {
  if (length(x) == 0L || is.na(x[1])) return("")
  x <- enc2utf8(as.character(x[1]))
  gsub("(*UCP)^[\\s\\x{1c}-\\x{1f}]+|[\\s\\x{1c}-\\x{1f}]+$", "", x, perl = TRUE)
}

.rules_file <- function() {
  env <- Sys.getenv("PLANESPOTTER_TYPE_RULES", "")
  if (nzchar(env)) return(env)
  here <- if (exists(".ps_r_dir", inherits = TRUE)) get(".ps_r_dir", inherits = TRUE) else "r"
  f <- file.path(here, "..", "dataset", "type_rules.json")
  if (!file.exists(f)) stop("cannot find dataset/type_rules.json (set PLANESPOTTER_TYPE_RULES)")
  normalizePath(f)
}

.ps_rules_cache <- new.env()

#' The label table: list(prefixes = longest first, rules = list of list(pattern, manufacturer,
#' icao_type, sub_model)). Read once from dataset/type_rules.json.
ps_load_rules <- function() {
  if (is.null(.ps_rules_cache$rules)) {
    data <- jsonlite::fromJSON(.rules_file(), simplifyVector = FALSE)
    prefixes <- unlist(data$manufacturer_prefixes)
    prefixes <- prefixes[order(-nchar(prefixes), method = "radix")]  # stable, like Python's sort
    .ps_rules_cache$rules <- list(prefixes = prefixes, rules = data$rules)
  }
  .ps_rules_cache$rules
}

#' Manufacturer as written: the longest listed multi-word prefix of type_raw followed by a
#' space, else its first word; "" for an empty string (dataset.labels.split_manufacturer).
ps_split_manufacturer <- function(type_raw) {
  s <- ps_squish(type_raw)
  if (!nzchar(s)) return("")
  for (p in ps_load_rules()$prefixes) {
    if (startsWith(s, paste0(p, " "))) return(p)
  }
  strsplit(s, " ", fixed = TRUE)[[1]][1]
}

.expand <- function(template, s, m) {
  if (!grepl("{1}", template, fixed = TRUE)) return(template)
  start <- attr(m, "capture.start")[1, 1]
  len <- attr(m, "capture.length")[1, 1]
  g <- if (!is.null(start) && start > 0 && len >= 0) substr(s, start, start + len - 1L) else ""
  gsub("{1}", g, template, fixed = TRUE)
}

#' Map a type string to list(manufacturer, icao_type, sub_model) with the rules table
#' (dataset.labels.normalise_type): first matching rule (case-insensitive search), else the
#' manufacturer class of the raw manufacturer with empty designator and sub-model.
ps_normalise_type <- function(type_raw, manufacturer_raw = "") {
  s <- ps_squish(type_raw)
  m_raw <- ps_squish(manufacturer_raw)
  if (!nzchar(s) && !nzchar(m_raw)) return(list(manufacturer = "", icao_type = "", sub_model = ""))
  if (nzchar(m_raw) && !startsWith(tolower(s), tolower(m_raw))) s <- ps_squish(paste(m_raw, s))
  for (rule in ps_load_rules()$rules) {
    m <- regexpr(paste0("(*UCP)", rule$pattern), s, perl = TRUE, ignore.case = TRUE)
    if (m[1] != -1L) {
      return(list(manufacturer = rule$manufacturer, icao_type = .expand(rule$icao_type, s, m),
                  sub_model = .expand(rule$sub_model, s, m)))
    }
  }
  maker <- if (nzchar(m_raw)) m_raw else ps_split_manufacturer(s)
  list(manufacturer = if (maker %in% c("Airbus", "Boeing")) maker else "Other",
       icao_type = "", sub_model = "")
}

# ---------------------------------------------------------------- urllib.parse, ported
.USES_RELATIVE <- c("", "ftp", "http", "gopher", "nntp", "imap", "wais", "file", "https", "shttp",
                    "mms", "prospero", "rtsp", "rtspu", "sftp", "svn", "svn+ssh", "ws", "wss")
.USES_NETLOC <- c("", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms",
                  "https", "shttp", "snews", "prospero", "rtsp", "rtspu", "rsync", "svn",
                  "svn+ssh", "sftp", "nfs", "git", "git+ssh", "ws", "wss")
.USES_PARAMS <- c("", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtspu",
                  "sip", "sips", "mms", "sftp", "tel")

.find <- function(s, ch, start = 1L) {  # 1-based position of fixed ch at or after start, else -1
  if (start > nchar(s)) return(-1L)
  p <- regexpr(ch, substr(s, start, nchar(s)), fixed = TRUE)[1]
  if (p == -1L) -1L else p + start - 1L
}

#' urllib.parse.urlsplit (Python 3.11): list(scheme, netloc, path, query, fragment).
py_urlsplit <- function(url, scheme = "") {
  url <- sub("^[\\x{00}-\\x{20}]+", "", enc2utf8(url), perl = TRUE)
  url <- gsub("[\t\r\n]", "", url)
  scheme <- gsub("[\t\r\n]", "", gsub("^[\\x{00}-\\x{20}]+|[\\x{00}-\\x{20}]+$", "", scheme, perl = TRUE))
  netloc <- query <- fragment <- ""
  i <- .find(url, ":")
  if (i > 1L && grepl("^[A-Za-z]", url) &&
      grepl("^[A-Za-z0-9+.-]+$", substr(url, 1L, i - 1L))) {
    scheme <- tolower(substr(url, 1L, i - 1L))
    url <- substr(url, i + 1L, nchar(url))
  }
  if (substr(url, 1L, 2L) == "//") {
    delim <- nchar(url) + 1L
    for (c in c("/", "?", "#")) {
      w <- .find(url, c, 3L)
      if (w >= 0L) delim <- min(delim, w)
    }
    netloc <- substr(url, 3L, delim - 1L)
    url <- substr(url, delim, nchar(url))
  }
  j <- .find(url, "#")
  if (j > 0L) {
    fragment <- substr(url, j + 1L, nchar(url))
    url <- substr(url, 1L, j - 1L)
  }
  j <- .find(url, "?")
  if (j > 0L) {
    query <- substr(url, j + 1L, nchar(url))
    url <- substr(url, 1L, j - 1L)
  }
  list(scheme = scheme, netloc = netloc, path = url, query = query, fragment = fragment)
}

#' urllib.parse.urlunsplit (Python 3.11).
py_urlunsplit <- function(scheme, netloc, path, query, fragment) {
  url <- path
  if (nzchar(netloc) || (nzchar(scheme) && scheme %in% .USES_NETLOC && substr(url, 1L, 2L) != "//")) {
    if (nzchar(url) && substr(url, 1L, 1L) != "/") url <- paste0("/", url)
    url <- paste0("//", netloc, url)
  }
  if (nzchar(scheme)) url <- paste0(scheme, ":", url)
  if (nzchar(query)) url <- paste0(url, "?", query)
  if (nzchar(fragment)) url <- paste0(url, "#", fragment)
  url
}

.urlparse <- function(url, scheme = "") {
  p <- py_urlsplit(url, scheme)
  params <- ""
  if (p$scheme %in% .USES_PARAMS && grepl(";", p$path, fixed = TRUE)) {
    path <- p$path
    slash <- gregexpr("/", path, fixed = TRUE)[[1]]
    if (slash[1] != -1L) {
      i <- .find(path, ";", max(slash))
    } else {
      i <- .find(path, ";")
    }
    if (i > 0L) {
      params <- substr(path, i + 1L, nchar(path))
      p$path <- substr(path, 1L, i - 1L)
    }
  }
  p$params <- params
  p
}

.urlunparse <- function(p) {
  path <- if (nzchar(p$params)) paste0(p$path, ";", p$params) else p$path
  py_urlunsplit(p$scheme, p$netloc, path, p$query, p$fragment)
}

#' urllib.parse.urljoin (Python 3.11), character-for-character.
py_urljoin <- function(base, url) {
  if (!nzchar(base)) return(url)
  if (!nzchar(url)) return(base)
  b <- .urlparse(base, "")
  u <- .urlparse(url, b$scheme)
  if (u$scheme != b$scheme || !(u$scheme %in% .USES_RELATIVE)) return(url)
  if (u$scheme %in% .USES_NETLOC) {
    if (nzchar(u$netloc)) return(.urlunparse(u))
    u$netloc <- b$netloc
  }
  if (!nzchar(u$path) && !nzchar(u$params)) {
    u$path <- b$path
    u$params <- b$params
    if (!nzchar(u$query)) u$query <- b$query
    return(.urlunparse(u))
  }
  split <- function(s) {  # Python's str.split('/') (keeps empty fields)
    if (!nzchar(s)) return("")
    v <- strsplit(s, "/", fixed = TRUE)[[1]]
    if (endsWith(s, "/")) v <- c(v, "")
    v
  }
  base_parts <- split(b$path)
  if (base_parts[length(base_parts)] != "") base_parts <- base_parts[-length(base_parts)]
  if (substr(u$path, 1L, 1L) == "/") {
    segments <- split(u$path)
  } else {
    segments <- c(base_parts, split(u$path))
    n <- length(segments)
    if (n > 2L) {
      mid <- segments[2:(n - 1L)]
      segments <- c(segments[1], mid[nzchar(mid)], segments[n])
    }
  }
  resolved <- character(0)
  for (seg in segments) {
    if (seg == "..") {
      if (length(resolved)) resolved <- resolved[-length(resolved)]
    } else if (seg == ".") {
      next
    } else {
      resolved <- c(resolved, seg)
    }
  }
  if (segments[length(segments)] %in% c(".", "..")) resolved <- c(resolved, "")
  path <- paste(resolved, collapse = "/")
  u$path <- if (nzchar(path)) path else "/"
  .urlunparse(u)
}

.strip_query <- function(url) {
  p <- py_urlsplit(url)
  py_urlunsplit(p$scheme, p$netloc, p$path, "", "")
}

# ---------------------------------------------------------------- card parsing
#' The URL of the largest w descriptor in an HTML srcset ("" if none; ties keep the first;
#' candidates without w count as 0) — scrape.parse.largest_srcset_url.
ps_largest_srcset_url <- function(srcset) {
  best <- ""
  best_w <- -1
  for (item in strsplit(srcset, ",", fixed = TRUE)[[1]]) {
    item <- .py_strip(item)
    m <- regmatches(item, regexec("(*UCP)^(\\S+)(?:\\s+(\\d+)w)?$", item, perl = TRUE))[[1]]
    if (length(m) == 0L) next
    w <- if (nzchar(m[3])) as.numeric(m[3]) else 0
    if (w > best_w) {
      best <- m[2]
      best_w <- w
    }
  }
  best
}

.MONTHS <- c("january", "february", "march", "april", "may", "june", "july", "august",
             "september", "october", "november", "december")
.MONTHS_ABBR <- substr(.MONTHS, 1L, 3L)

#' ISO 8601 date from a card's day/month/year link texts (scrape.parse.parse_date):
#' "13 May 2024" -> "2024-05-13", "May 2024" -> "2024-05", "2024" -> "2024", else "".
ps_parse_date <- function(parts) {
  parts <- vapply(parts, ps_squish, "")
  parts <- parts[nzchar(parts)]
  parts <- sub("^([0-9]{1,2})(st|nd|rd|th)$", "\\1", parts, ignore.case = TRUE)
  text <- paste(parts, collapse = " ")
  day_re <- "(3[01]|[12][0-9]|0[1-9]|[1-9])"
  month_num <- function(name, abbr) {
    i <- match(tolower(name), if (abbr) .MONTHS_ABBR else .MONTHS)
    if (is.na(i)) NA_integer_ else i
  }
  valid <- function(y, mo, d) {
    dim <- c(31L, 28L, 31L, 30L, 31L, 30L, 31L, 31L, 30L, 31L, 30L, 31L)[mo]
    if (mo == 2L && ((y %% 4L == 0L && y %% 100L != 0L) || y %% 400L == 0L)) dim <- 29L
    d <= dim
  }
  for (abbr in c(FALSE, TRUE)) {
    m <- regmatches(text, regexec(paste0("^", day_re, " ([A-Za-z]+) ([0-9]{4})$"), text))[[1]]
    if (length(m)) {
      mo <- month_num(m[3], abbr)
      y <- as.integer(m[4]); d <- as.integer(m[2])
      if (!is.na(mo) && y >= 1L && valid(y, mo, d)) return(sprintf("%s-%02d-%02d", m[4], mo, d))
    }
  }
  for (abbr in c(FALSE, TRUE)) {
    m <- regmatches(text, regexec("^([A-Za-z]+) ([0-9]{4})$", text))[[1]]
    if (length(m)) {
      mo <- month_num(m[2], abbr)
      if (!is.na(mo) && as.integer(m[3]) >= 1L) return(sprintf("%s-%02d", m[3], mo))
    }
  }
  if (grepl("^[0-9]{4}$", text) && as.integer(text) >= 1L) return(text)
  ""
}

#' Manufacturer names that may open a type string (scrape.parse.known_makers): the rules'
#' multi-word prefixes (longest first), then Airbus, Boeing, Bombardier, Embraer, ATR.
ps_known_makers <- function() c(ps_load_rules()$prefixes, "Airbus", "Boeing", "Bombardier", "Embraer", "ATR")

.split_alt <- function(alt, registration) {
  rest <- alt
  if (nzchar(registration) && startsWith(alt, paste0(registration, " "))) {
    rest <- substr(alt, nchar(registration) + 2L, nchar(alt))
  }
  makers <- ps_known_makers()
  padded <- paste0(" ", rest)
  best <- -1L
  for (m in makers) {
    hits <- gregexpr(paste0(" ", m, " "), padded, fixed = TRUE)[[1]]
    if (hits[1] != -1L) best <- max(best, max(hits) - 1L)  # 0-based index into padded
  }
  if (best < 0L) return(c("", ""))
  # padded[best] is the space before the maker, i.e. rest[best - 1] (0-based)
  c(ps_squish(substr(rest, 1L, best)), ps_squish(substr(rest, best + 1L, nchar(rest))))
}

# A URL path segment percent-decoded as UTF-8 and squished (scrape.parse._unquote): %XX
# escapes become bytes, anything else stays; when the bytes are not UTF-8 or hold a NUL,
# the segment as given.
.py_unquote <- function(segment) {
  if (!grepl("%", segment, fixed = TRUE)) return(ps_squish(segment))
  b <- charToRaw(enc2utf8(segment))
  hex <- function(x) grepl("^[0-9A-Fa-f]$", rawToChar(x))
  out <- raw(0)
  i <- 1L
  n <- length(b)
  while (i <= n) {
    if (b[i] == as.raw(0x25) && i + 2L <= n && hex(b[i + 1L]) && hex(b[i + 2L])) {
      out <- c(out, as.raw(strtoi(rawToChar(b[(i + 1L):(i + 2L)]), 16L)))
      i <- i + 3L
    } else {
      out <- c(out, b[i])
      i <- i + 1L
    }
  }
  if (any(out == as.raw(0L))) return(ps_squish(segment))
  text <- rawToChar(out)
  Encoding(text) <- "UTF-8"
  if (!validUTF8(text)) return(ps_squish(segment))
  ps_squish(text)
}

# TRUE when type_text already starts with a manufacturer (scrape.parse._names_maker).
.names_maker <- function(type_text, maker) {
  low <- tolower(type_text)
  if (nzchar(maker) && startsWith(low, paste0(tolower(maker), " "))) return(TRUE)
  tolower(ps_split_manufacturer(type_text)) %in% tolower(ps_known_makers())
}

# The text of the span right after the element holding the registration (scrape.parse._msn_beside).
.msn_beside <- function(card, registration) {
  if (!nzchar(registration)) return("")
  for (el in xml2::xml_find_all(card, ".//*[following-sibling::*[1][self::span]]")) {
    if (ps_squish(xml2::xml_text(el)) == registration) {
      return(ps_squish(xml2::xml_text(xml2::xml_find_first(el, "following-sibling::*[1]"))))
    }
  }
  ""
}

.first_text <- function(node, xpath) {
  nodes <- xml2::xml_find_all(node, xpath)
  if (length(nodes) == 0L) return("")
  ps_squish(xml2::xml_text(nodes[[1]]))
}

.attr <- function(node, name) {
  v <- xml2::xml_attr(node, name)
  if (is.na(v)) NA_character_ else v
}

.or <- function(...) {  # Python's `a or b or c` on strings (NA counts as empty)
  for (v in list(...)) if (length(v) && !is.na(v) && nzchar(v)) return(v)
  ""
}

.card_record <- function(card, base_url) {
  href <- .attr(card, "href")
  is_photo_link <- xml2::xml_name(card) == "a" && !is.na(href) && grepl("/photo/", href, fixed = TRUE)
  link <- if (is_photo_link) card else NULL
  if (is.null(link)) {
    links <- xml2::xml_find_all(card, ".//a[contains(@href, '/photo/')][.//img[@alt]]")
    if (length(links)) link <- links[[1]]
  }
  photo_url <- .or(.attr(card, "data-photo-url"), if (!is.null(link)) .attr(link, "href") else "")
  m <- regmatches(photo_url, regexec("/photo/([0-9]+)", photo_url))[[1]]
  card_id <- .attr(card, "id")
  if (length(m)) {
    source_id <- m[2]
  } else if (!is.na(card_id) && grepl("^[0-9]+$", card_id)) {
    source_id <- card_id
  } else {
    return(NULL)
  }

  imgs <- xml2::xml_find_all(if (!is.null(link)) link else card, ".//img[@alt]")
  img <- if (length(imgs)) imgs[[1]] else NULL
  alt <- if (!is.null(img)) ps_squish(.attr(img, "alt")) else ""
  image_url <- ""
  if (!is.null(img)) {
    image_url <- .or(ps_largest_srcset_url(.or(.attr(img, "srcset"))),
                     .py_strip(.or(.attr(img, "src"))), .py_strip(.or(.attr(img, "data-src"))))
  }
  if (nzchar(image_url)) image_url <- py_urljoin(base_url, image_url)
  page_url <- if (nzchar(photo_url)) .strip_query(py_urljoin(base_url, .py_strip(photo_url))) else ""

  data_box <- xml2::xml_find_all(card, "(.//*[br])[last()]")
  lines <- character(0)
  grid_reg <- grid_msn <- ""
  if (length(data_box)) {
    texts <- vapply(xml2::xml_find_all(data_box[[1]], "text()"), function(t) ps_squish(xml2::xml_text(t)), "")
    lines <- texts[nzchar(texts)]
    grid_reg <- .first_text(data_box[[1]], "div[1]/div[1]")
    grid_msn <- .first_text(data_box[[1]], "div[1]/div[2]")
  }
  registration <- .or(.first_text(card, "(.//a[contains(@href, '/photos/reg/')])[1]"), grid_reg,
                      if (nzchar(alt)) strsplit(alt, " ", fixed = TRUE)[[1]][1] else "")
  msn <- .or(grid_msn, .msn_beside(card, registration))
  alt_split <- .split_alt(alt, registration)
  alt_type <- alt_split[2]
  airline <- .or(.first_text(card, "(.//a[contains(@href, '/airline/')])[1]"),
                 if (length(lines) >= 2L) lines[1] else "", alt_split[1])
  location <- .or(.first_text(card, "(.//a[contains(@href, '/photos/airport/')])[1]"),
                  if (length(lines) >= 3L) lines[3] else "")
  date <- ps_parse_date(xml2::xml_text(xml2::xml_find_all(card, ".//a[contains(@href, '/photos/date/')]")))
  photographer <- ""
  for (t in xml2::xml_text(xml2::xml_find_all(card, ".//text()"))) {
    t <- ps_squish(t)
    if (startsWith(t, "\u00a9")) {
      photographer <- ps_squish(substr(t, 2L, nchar(t)))
      break
    }
  }

  # manufacturer and type (scrape/parse.py docstring: "Manufacturer and type")
  type_text <- href_maker <- family <- ""
  type_links <- xml2::xml_find_all(card, "(.//a[contains(@href, '/photos/aircraft/')])[1]")
  if (length(type_links)) {
    type_text <- ps_squish(xml2::xml_text(type_links[[1]]))
    href <- .or(.attr(type_links[[1]], "href"))
    m <- regmatches(href, regexec("/photos/aircraft/([^?#]*)", href, perl = TRUE))[[1]]
    segments <- if (length(m)) strsplit(m[2], "/", fixed = TRUE)[[1]] else character(0)
    segments <- segments[nzchar(segments)]
    if (length(segments) >= 2L) {  # /photos/aircraft/<manufacturer>/<family>
      href_maker <- .py_unquote(segments[1])
      family <- .py_unquote(segments[2])
    }
  }
  link_maker <- ""
  maker_links <- xml2::xml_find_all(card, "(.//a[contains(@href, '/photos/manufacturer/')])[1]")
  if (length(maker_links)) {
    href <- .or(.attr(maker_links[[1]], "href"))
    m <- regmatches(href, regexec("/photos/manufacturer/([^/?#]*)", href, perl = TRUE))[[1]]
    link_maker <- .or(ps_squish(xml2::xml_text(maker_links[[1]])), if (length(m)) .py_unquote(m[2]) else "")
  }
  link_maker <- .or(link_maker, href_maker)
  maker <- .or(link_maker, ps_split_manufacturer(alt_type))
  base <- .or(type_text, if (length(lines) >= 2L) lines[2] else "", alt_type)
  type_raw <- if (!nzchar(maker) || !nzchar(base) || .names_maker(base, maker)) base else ps_squish(paste(maker, base))
  manufacturer_raw <- .or(link_maker, ps_split_manufacturer(type_raw))
  label <- ps_normalise_type(type_raw, .or(ps_split_manufacturer(type_raw), manufacturer_raw))
  if (!nzchar(label$icao_type) && nzchar(family)) {
    completed <- ps_normalise_type(family, link_maker)
    if (nzchar(completed$icao_type)) label <- completed
  }
  list(source_id = source_id, page_url = page_url, image_url = image_url,
       registration = registration, msn = msn, airline = airline,
       manufacturer_raw = manufacturer_raw, type_raw = type_raw, location = location, date = date,
       photographer = photographer, manufacturer = label$manufacturer,
       icao_type = label$icao_type, sub_model = label$sub_model)
}

#' Parse a listing page (or a fragment of cards) into one row per photo card.
#'
#' @param html the page as a character string (already decoded; UTF-8).
#' @param base_url the URL the page was fetched from (resolves relative links).
#' @return a data.frame with the columns PS_PARSED_FIELDS (all character, "" when absent),
#'   one row per card in document order, duplicates by photo id dropped; zero rows for the
#'   no-results page. Same rules as scrape.parse.parse_listing.
ps_parse_listing <- function(html, base_url = PS_DEFAULT_BASE_URL) {
  if (!is.character(html) || length(html) != 1L) stop("html must be a single character string")
  doc <- xml2::read_html(html, encoding = "UTF-8")
  cards <- xml2::xml_find_all(doc, PS_CARD_XPATH)
  records <- list()
  seen <- character(0)
  for (card in cards) {
    rec <- .card_record(card, base_url)
    if (is.null(rec) || rec$source_id %in% seen) next
    seen <- c(seen, rec$source_id)
    records[[length(records) + 1L]] <- rec
  }
  if (!length(records)) {
    return(as.data.frame(setNames(replicate(length(PS_PARSED_FIELDS), character(0), simplify = FALSE),
                                  PS_PARSED_FIELDS), stringsAsFactors = FALSE))
  }
  df <- do.call(rbind, lapply(records, function(r) as.data.frame(r, stringsAsFactors = FALSE)))
  rownames(df) <- NULL
  df[, PS_PARSED_FIELDS, drop = FALSE]
}

#' Human-readable credit line (scrape.parse.attribution).
ps_attribution <- function(photographer, page_url) {
  if (!nzchar(photographer) && !nzchar(page_url)) return("")
  credit <- if (nzchar(photographer)) {
    paste0("Photo \u00a9 ", photographer, " via Planespotters.net")
  } else {
    "Photo via Planespotters.net"
  }
  if (nzchar(page_url)) paste0(credit, ", ", page_url) else credit
}

#' Full schema rows (PS_COLUMNS) from parsed records (scrape.parse.to_row): parsed fields,
#' source, attribution and licence; image columns stay "".
ps_to_rows <- function(records) {
  n <- nrow(records)
  out <- as.data.frame(setNames(replicate(length(PS_COLUMNS), rep("", n), simplify = FALSE), PS_COLUMNS),
                       stringsAsFactors = FALSE)
  for (f in PS_PARSED_FIELDS) out[[f]] <- records[[f]]
  out$source <- rep(PS_SOURCE, n)
  out$attribution <- mapply(ps_attribution, records$photographer, records$page_url, USE.NAMES = FALSE)
  if (n == 0L) out$attribution <- character(0)
  out$licence <- rep(PS_LICENCE, n)
  out
}

#' CSV text as Python's csv.writer writes it (dialect excel, lineterminator "\n"): a field is
#' quoted when it contains , " \r or \n, quotes are doubled; a lone empty field is quoted.
ps_csv_text <- function(df) {
  q <- function(v) {
    v <- enc2utf8(as.character(v))
    need <- grepl("[,\"\r\n]", v)
    v[need] <- paste0("\"", gsub("\"", "\"\"", v[need], fixed = TRUE), "\"")
    v
  }
  lines <- paste(q(names(df)), collapse = ",")
  if (nrow(df)) {
    cols <- lapply(df, q)
    body <- do.call(paste, c(cols, sep = ","))
    if (ncol(df) == 1L) body[df[[1]] == ""] <- "\"\""
    lines <- c(lines, body)
  }
  paste0(paste(lines, collapse = "\n"), "\n")
}

.main <- function(args) {
  usage <- "usage: Rscript r/scrape.R FILE [--base-url URL]"
  base_url <- PS_DEFAULT_BASE_URL
  file <- NULL
  i <- 1L
  while (i <= length(args)) {
    a <- args[i]
    if (a == "--base-url") {
      if (i == length(args)) { message(usage); quit(status = 2L) }
      base_url <- args[i + 1L]
      i <- i + 2L
    } else if (startsWith(a, "--base-url=")) {
      base_url <- sub("^--base-url=", "", a)
      i <- i + 1L
    } else if (a %in% c("-h", "--help")) {
      cat(usage, "\n")
      quit(status = 0L)
    } else if (is.null(file)) {
      file <- a
      i <- i + 1L
    } else {
      message(usage)
      quit(status = 2L)
    }
  }
  if (is.null(file)) { message(usage); quit(status = 2L) }
  fail <- function(msg) { message("scrape.R: error: ", msg); quit(status = 1L) }
  if (dir.exists(file)) fail(sprintf("cannot read %s: is a directory", file))
  if (!file.exists(file)) fail(sprintf("cannot read %s: no such file", file))
  bytes <- readBin(file, "raw", file.info(file)$size)
  html <- rawToChar(bytes)
  Encoding(html) <- "UTF-8"
  if (!validUTF8(html)) fail(sprintf("cannot read %s: not UTF-8 text", file))
  if (!grepl("<", html, fixed = TRUE)) fail(sprintf("cannot parse %s: no HTML markup", file))
  rows <- ps_to_rows(ps_parse_listing(html, base_url))
  out <- stdout()
  writeLines(ps_csv_text(rows), out, sep = "", useBytes = TRUE)
}

.ps_r_dir <- local({
  f <- tryCatch(normalizePath(sys.frame(1)$ofile), error = function(e) NULL)
  if (is.null(f)) {
    a <- grep("^--file=", commandArgs(FALSE), value = TRUE)
    if (length(a)) f <- normalizePath(sub("^--file=", "", a[1]))
  }
  if (is.null(f)) "r" else dirname(f)
})

if (sys.nframe() == 0L) .main(commandArgs(trailingOnly = TRUE))
