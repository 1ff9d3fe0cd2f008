# json.R: a JSON writer that produces the bytes Python's json.dumps does for the same value,
# as Flask's jsonify sends them (ensure_ascii=True, separators (",", ":"), keys in insertion
# order, a trailing "\n" added by the caller). Used by r/plumber.R so that bodies of the R
# reference server can be compared with our gunicorn server byte for byte.
#
# Why not jsonlite: jsonlite::toJSON formats doubles with at most 15 significant digits
# (digits = NA) or rounds them (plumber's default digits = 4), boxes scalars and escapes
# non-ASCII differently; Python writes floats as repr(), the shortest decimal string that
# reads back to the same double (David Gay / Python's float_repr_style "short").
#
# Mapping (R value -> JSON):
#   NULL, NA                          -> null
#   named list                        -> object (names as keys, in order)
#   unnamed list, I(vector)           -> array
#   atomic vector of length 1         -> scalar (logical -> true/false, integer -> 123,
#                                        double -> Python repr, character -> string)
#   atomic vector of other length     -> array

#' Python repr() of one double, e.g. 0.1 -> "0.1", 1 -> "1.0", 1e-5 -> "1e-05".
#'
#' The shortest significant-digit count p in 1..17 whose correctly rounded %.{p-1}e string
#' (glibc's printf rounds exactly) reads back to x under IEEE round-half-even; printed
#' positionally when the decimal exponent is in [-4, 15], else as d.ddde[+-]XX (CPython's
#' float_repr_style "short", Objects/floatobject.c and Python/pystrtod.c).
#' "Reads back" is decided exactly (see .roundtrips): R's own string-to-double conversion
#' (R_strtod, long double accumulation) is not correctly rounded near ties, which changed the
#' digit count for about 1 number in 3500 in our measurements.
#' NaN -> "NaN", Inf -> "Infinity", -Inf -> "-Infinity" (json.dumps with allow_nan=True).
py_float_repr <- function(x) {
  stopifnot(is.numeric(x), length(x) == 1L)
  x <- as.double(x)
  if (is.nan(x)) return("NaN")
  if (is.infinite(x)) return(if (x > 0) "Infinity" else "-Infinity")
  if (x == 0) return(if (1 / x < 0) "-0.0" else "0.0")
  ax <- abs(x)
  cand <- function(p) sprintf("%.*e", p - 1L, ax)
  # R's parser as a hint, then the exact test around the hinted length.
  p0 <- 17L
  for (p in 1:17) if (as.double(cand(p)) == ax) { p0 <- p; break }
  b <- .bounds(ax)
  p <- if (p0 > 1L && .roundtrips(cand(p0 - 1L), b)) p0 - 1L else p0
  while (p < 17L && !.roundtrips(cand(p), b)) p <- p + 1L
  s <- cand(p)
  mant <- sub("e.*$", "", s)
  expo <- as.integer(sub("^.*e", "", s))
  digits <- sub("0+$", "", gsub(".", "", mant, fixed = TRUE))
  if (digits == "") digits <- "0"
  nd <- nchar(digits)
  if (expo >= -4L && expo <= 15L) {
    if (expo >= 0L) {
      int_len <- expo + 1L
      if (nd <= int_len) {
        out <- paste0(digits, strrep("0", int_len - nd), ".0")
      } else {
        out <- paste0(substr(digits, 1L, int_len), ".", substr(digits, int_len + 1L, nd))
      }
    } else {
      out <- paste0("0.", strrep("0", -expo - 1L), digits)
    }
  } else {
    m <- if (nd > 1L) paste0(substr(digits, 1L, 1L), ".", substr(digits, 2L, nd)) else digits
    out <- paste0(m, "e", if (expo < 0L) "-" else "+", sprintf("%02d", abs(expo)))
  }
  if (x < 0) paste0("-", out) else out
}

# Exact decimal expansion of a positive double or of a %e string: digits (no trailing zeros)
# and the decimal exponent of the first digit. glibc prints the exact binary value for any
# precision; the precision asked for is an upper bound of the significant digits of
# v = m * 2^q (-q digits after the point), at most 800 (every double has <= 767).
.dec <- function(v) {
  if (is.character(v)) {
    s <- v
  } else {
    l10 <- floor(log10(v))
    q <- floor(log2(v)) - 52
    prec <- if (q < 0) -q + l10 + 3 else l10 + 3
    s <- sprintf("%.*e", as.integer(min(800, max(20, prec))), v)
  }
  e <- as.integer(sub("^.*e", "", s))
  d <- sub("0+$", "", gsub(".", "", sub("e.*$", "", s), fixed = TRUE))
  if (d == "") d <- "0"
  list(d = as.integer(strsplit(d, "", fixed = TRUE)[[1]]), e = e)
}

# Digits of decimal a on the grid of positions top, top-1, ..., bottom (powers of ten).
.on_grid <- function(a, top, bottom) {
  out <- integer(top - bottom + 1L)
  idx <- (top - a$e) + seq_along(a$d)
  out[idx] <- a$d
  out
}

.grid_of <- function(...) {
  xs <- list(...)
  list(top = max(vapply(xs, function(a) a$e, 1L)) + 1L,
       bottom = min(vapply(xs, function(a) a$e - length(a$d) + 1L, 1L)))
}

# a + sgn * b on a common grid (digit vectors, most significant first; a >= b when sgn < 0).
.addsub <- function(a, b, sgn) {
  n <- length(a)
  out <- integer(n)
  carry <- 0L
  for (i in n:1) {
    v <- a[i] + sgn * b[i] + carry
    carry <- 0L
    if (v >= 10L) { v <- v - 10L; carry <- 1L }
    if (v < 0L) { v <- v + 10L; carry <- -1L }
    out[i] <- v
  }
  out
}

.cmp <- function(a, b) {  # sign of a - b for digit vectors on one grid
  d <- which(a != b)
  if (length(d) == 0L) return(0L)
  if (a[d[1]] > b[d[1]]) 1L else -1L
}

# The rounding interval of positive double x: exact decimals of x, x - gap_below/2 and
# x + gap_above/2, and whether x's significand is even (ties go to x then).
.bounds <- function(x) {
  bytes <- as.integer(writeBin(x, raw(), size = 8L, endian = "little"))
  bexp <- bitwAnd(bytes[8], 0x7fL) * 16L + bitwShiftR(bytes[7], 4L)
  frac_zero <- all(bytes[1:6] == 0L) && bitwAnd(bytes[7], 0x0fL) == 0L
  ulp <- 2^(max(bexp, 1L) - 1075L)
  # ulp/2 = 5*ulp/10 and ulp/4 = 25*ulp/100, exact even where ulp/2 would underflow
  half <- .dec(5 * ulp)
  half$e <- half$e - 1L
  quarter <- .dec(25 * ulp)
  quarter$e <- quarter$e - 2L
  list(x = .dec(x), up = half, down = if (frac_zero && bexp > 1L) quarter else half,
       even = bitwAnd(bytes[1], 1L) == 0L)
}

# Does the decimal string s (a %e string) convert to x under round-half-even?
.roundtrips <- function(s, b) {
  d <- .dec(s)
  g <- .grid_of(b$x, b$up, b$down, d)
  gx <- .on_grid(b$x, g$top, g$bottom)
  hi <- .addsub(gx, .on_grid(b$up, g$top, g$bottom), 1L)
  lo <- .addsub(gx, .on_grid(b$down, g$top, g$bottom), -1L)
  gd <- .on_grid(d, g$top, g$bottom)
  c_hi <- .cmp(gd, hi)
  c_lo <- .cmp(gd, lo)
  if (c_hi < 0L && c_lo > 0L) return(TRUE)
  if ((c_hi == 0L || c_lo == 0L) && b$even) return(TRUE)
  FALSE
}

#' A JSON string literal as Python's json.dumps(ensure_ascii=True) writes it.
py_json_string <- function(s) {
  s <- enc2utf8(as.character(s))
  cps <- utf8ToInt(s)
  if (length(cps) == 0L || (length(cps) == 1L && is.na(cps))) {
    if (is.na(s)) stop("cannot encode NA_character_ as a JSON string")
    return("\"\"")
  }
  out <- character(length(cps))
  plain <- cps >= 0x20 & cps <= 0x7e & cps != 0x22 & cps != 0x5c
  out[plain] <- intToUtf8(cps[plain], multiple = TRUE)
  short <- c("8" = "\\b", "9" = "\\t", "10" = "\\n", "12" = "\\f", "13" = "\\r",
             "34" = "\\\"", "92" = "\\\\")
  todo <- which(!plain)
  for (i in todo) {
    cp <- cps[i]
    key <- as.character(cp)
    if (!is.na(short[key])) {
      out[i] <- short[[key]]
    } else if (cp < 0x10000) {
      out[i] <- sprintf("\\u%04x", cp)
    } else {
      v <- cp - 0x10000
      out[i] <- sprintf("\\u%04x\\u%04x", 0xd800 + v %/% 0x400, 0xdc00 + v %% 0x400)
    }
  }
  paste0("\"", paste(out, collapse = ""), "\"")
}

py_json_scalar <- function(x) {
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.integer(x)) return(as.character(x))
  if (is.double(x)) return(py_float_repr(x))
  if (is.character(x) || is.factor(x)) return(py_json_string(as.character(x)))
  stop("cannot encode a value of class ", paste(class(x), collapse = "/"), " as JSON")
}

#' Encode an R value as compact JSON text (no trailing newline), see the mapping above.
py_json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    nm <- names(x)
    if (!is.null(nm) && !inherits(x, "AsIs")) {
      if (any(is.na(nm) | nm == "")) stop("a JSON object needs a name for every element")
      parts <- vapply(seq_along(x), function(i) {
        paste0(py_json_string(nm[[i]]), ":", py_json(x[[i]]))
      }, character(1))
      return(paste0("{", paste(parts, collapse = ","), "}"))
    }
    parts <- vapply(x, py_json, character(1))
    return(paste0("[", paste(parts, collapse = ","), "]"))
  }
  if (is.atomic(x)) {
    if (length(x) == 1L && !inherits(x, "AsIs")) return(py_json_scalar(x))
    parts <- vapply(seq_along(x), function(i) py_json_scalar(unclass(x)[i]), character(1))
    return(paste0("[", paste(parts, collapse = ","), "]"))
  }
  stop("cannot encode a value of class ", paste(class(x), collapse = "/"), " as JSON")
}

#' An empty JSON object ({}), which a bare list() would encode as [].
json_object <- function() structure(list(), names = character(0))

#' Python repr() of a str, as used in our API's error messages (e.g. 'nope.jpg').
#'
#' Single quotes unless the text contains ' and no "; backslash, the quote, \t \n \r and other
#' non-printable ASCII characters are escaped (\xNN); printable non-ASCII is kept.
py_str_repr <- function(s) {
  s <- enc2utf8(as.character(s))
  cps <- utf8ToInt(s)
  if (length(cps) == 1L && is.na(cps)) cps <- integer(0)
  q <- if (any(cps == 0x27) && !any(cps == 0x22)) "\"" else "'"
  qcp <- utf8ToInt(q)
  out <- vapply(cps, function(cp) {
    if (cp == 0x5c) return("\\\\")
    if (cp == qcp) return(paste0("\\", q))
    if (cp == 0x09) return("\\t")
    if (cp == 0x0a) return("\\n")
    if (cp == 0x0d) return("\\r")
    if (cp < 0x20 || cp == 0x7f) return(sprintf("\\x%02x", cp))
    if (cp >= 0x80 && cp < 0xa0) return(sprintf("\\x%02x", cp))
    intToUtf8(cp)
  }, character(1))
  paste0(q, paste(out, collapse = ""), q)
}
