# client.R: call a running planespotter server (ours, gunicorn; or the R reference server)
# from R with httr. Every function returns a data.frame.
#
#   source("r/client.R")
#   ps_classify_file("http://127.0.0.1:8000", "photo.jpg")
#   ps_classify_folder("http://127.0.0.1:8000", "photos/", batch_size = 16)
#   ps_classify_file("http://127.0.0.1:8000", "photo.jpg", registration = TRUE)  # + the registration
#   ps_metadata("http://127.0.0.1:8000"); ps_labels("http://127.0.0.1:8000")
#
# A non-2xx answer raises a condition of class "ps_http_error" with fields status, code (the
# server's stable error code, e.g. "unsupported_format_image") and message.

suppressPackageStartupMessages({
  library(httr)
  library(jsonlite)
})

PS_IMAGE_PATTERN <- "\\.(jpe?g|png|webp)$"

.ps_mime <- function(path) {
  ext <- tolower(tools::file_ext(path))
  switch(ext, jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", webp = "image/webp",
         "application/octet-stream")
}

.ps_stop_http <- function(resp) {
  body <- tryCatch(httr::content(resp, as = "parsed", type = "application/json", encoding = "UTF-8"),
                   error = function(e) NULL)
  code <- if (is.list(body) && !is.null(body$error)) body$error else "http_error"
  msg <- if (is.list(body) && !is.null(body$message)) body$message else httr::http_status(resp)$message
  stop(structure(class = c("ps_http_error", "error", "condition"),
                 list(message = sprintf("HTTP %d %s: %s", httr::status_code(resp), code, msg),
                      call = NULL, status = httr::status_code(resp), code = code)))
}

.ps_json <- function(resp) {
  if (httr::http_error(resp)) .ps_stop_http(resp)
  jsonlite::fromJSON(httr::content(resp, as = "text", encoding = "UTF-8"), simplifyVector = FALSE)
}

.num <- function(x) if (is.null(x)) NA_real_ else as.numeric(x)
.chr <- function(x) if (is.null(x)) NA_character_ else as.character(x)
.box <- function(x) if (is.null(x)) NA_character_ else paste(as.integer(unlist(x)), collapse = " ")
.lgl <- function(x) if (is.null(x)) NA else as.logical(x)
# The native answer's unsure_reasons (a JSON array of codes) as one string: "unusual_photo,views_disagree"; "" when sure.
.reasons <- function(x) paste(as.character(unlist(x)), collapse = ",")

# One row per prediction of a /predict answer.
.ps_predictions_df <- function(doc) {
  rows <- lapply(doc$predictions, function(p) {
    data.frame(file = .chr(p$file),
               manufacturer = .chr(p$manufacturer$label),
               p_manufacturer = .num(p$manufacturer$probability),
               family = .chr(p$family$label),
               p_family = .num(p$family$probability),
               icao_type = .chr(p$type$label),
               p_type = .num(p$type$probability),
               p_joint = .num(p$type$joint_probability),
               answer = .chr(p$answer$label),
               unsure = isTRUE(p$unsure),
               model_version = .chr(doc$model_version),
               answer_level = .chr(p$answer$level),
               answer_text = .chr(p$answer$text),
               p_aircraft = .num(p$aircraft$probability),
               box = .box(p$box),
               answer_source = .chr(p$answer$source),
               registration = .chr(p$registration$text),
               registration_icao_type = .chr(p$registration$icao_type),
               registration_agrees = .lgl(p$registration$agrees),
               unsure_reasons = .reasons(p$unsure_reasons),
               stringsAsFactors = FALSE)
  })
  do.call(rbind, rows)
}

#' Classify image files in one request (multipart, one `image` field per file).
#'
#' @param url server base URL, e.g. "http://127.0.0.1:8000".
#' @param paths character vector of JPEG/PNG/WebP files (at most 64, the server's limit).
#' @param top_k number of (manufacturer, type) pairs the server ranks (1..50).
#' @param timeout seconds.
#' @param registration also read the registration painted on each aircraft (?registration=1;
#'   slower): the server looks it up in its registry, when it has one.
#' @return data.frame, one row per file in order: file (the name sent), manufacturer
#'   ("Airbus", "Boeing", "Other" for another manufacturer; NA when the photo shows no
#'   aircraft), p_manufacturer (calibrated probability in [0, 1]; NA with no aircraft), family
#'   (aircraft family, e.g. "B777"; NA when the manufacturer has no stage-2 model, e.g. Other),
#'   p_family (P(family | manufacturer)), icao_type (ICAO type designator, NA unless the server
#'   is sure enough to name it), p_type (P(type | manufacturer)), p_joint (P(manufacturer) *
#'   P(type | manufacturer)), answer (the answer at the level the model knows: "B77W",
#'   "B777 family", "Boeing", "Other" or "none"), unsure (top manufacturer probability below the
#'   server's threshold, a photo unlike the model's training photos, or views that disagree: see
#'   unsure_reasons), model_version, answer_level ("type", "family", "manufacturer" or
#'   "none": not an aircraft), answer_text (the answer in words: "Boeing B77W", "another
#'   manufacturer (not Airbus or Boeing)", "not an aircraft"), p_aircraft (the localizer's
#'   aircraft probability; NA for a version without one), box (the crop the answer came from,
#'   "left top right bottom" in the image's pixels after EXIF rotation; NA for the whole image),
#'   answer_source ("image", or "registration" when the type is the registry's for the
#'   registration read on the aircraft), registration (the registration read and found in the
#'   server's registry, e.g. "D-ABYI"; NA when not asked, without a registry, or none found),
#'   registration_icao_type (the registry's ICAO type; NA likewise), registration_agrees (the
#'   registry's manufacturer is the answer's; NA likewise), unsure_reasons (why the answer is
#'   unsure: the codes "low_confidence" (the manufacturer is uncertain), "unusual_photo" (unlike
#'   the photos the model was trained on), "views_disagree" (the mirror image or a closer crop gives
#'   another answer), "types_close" (two types are close), in that order, joined by ","; "" when
#'   sure).
ps_classify_files <- function(url, paths, top_k = 3L, timeout = 120, registration = FALSE) {
  if (!length(paths)) stop("no files to classify")
  missing <- paths[!file.exists(paths)]
  if (length(missing)) stop("no such file: ", paste(missing, collapse = ", "))
  body <- lapply(paths, function(p) httr::upload_file(p, type = .ps_mime(p)))
  names(body) <- rep("image", length(body))
  query <- list(top_k = as.integer(top_k))
  if (isTRUE(registration)) query$registration <- 1L
  resp <- httr::POST(paste0(sub("/$", "", url), "/predict"), query = query,
                     body = body, encode = "multipart", httr::timeout(timeout))
  .ps_predictions_df(.ps_json(resp))
}

#' Classify one image file; see ps_classify_files for the returned columns (one row).
ps_classify_file <- function(url, path, top_k = 3L, timeout = 120, registration = FALSE) {
  if (length(path) != 1L) stop("give exactly one file (ps_classify_folder does many)")
  ps_classify_files(url, path, top_k = top_k, timeout = timeout, registration = registration)
}

#' Classify every image in a folder, batch_size files per request.
#'
#' @param dir folder; files matching `pattern` (case-insensitive) are sent in sorted order.
#' @param batch_size files per request (1..64).
#' @param progress show a text progress bar (utils::txtProgressBar).
#' @param registration also read each registration (see ps_classify_files).
#' @return data.frame as ps_classify_files, plus `path` (the full file path), in sorted
#'   file order; zero rows for a folder without images.
ps_classify_folder <- function(url, dir, batch_size = 16L, top_k = 3L, pattern = PS_IMAGE_PATTERN,
                               progress = FALSE, timeout = 120, registration = FALSE) {
  if (!dir.exists(dir)) stop("no such folder: ", dir)
  if (batch_size < 1L || batch_size > 64L) stop("batch_size must be between 1 and 64")
  paths <- sort(list.files(dir, pattern = pattern, ignore.case = TRUE, full.names = TRUE))
  if (!length(paths)) {
    return(data.frame(file = character(0), manufacturer = character(0), p_manufacturer = numeric(0),
                      family = character(0), p_family = numeric(0),
                      icao_type = character(0), p_type = numeric(0), p_joint = numeric(0),
                      answer = character(0), unsure = logical(0), model_version = character(0),
                      answer_level = character(0), answer_text = character(0), p_aircraft = numeric(0),
                      box = character(0), answer_source = character(0), registration = character(0),
                      registration_icao_type = character(0), registration_agrees = logical(0),
                      unsure_reasons = character(0), path = character(0),
                      stringsAsFactors = FALSE))
  }
  batches <- split(paths, ceiling(seq_along(paths) / batch_size))
  bar <- if (progress) utils::txtProgressBar(min = 0, max = length(paths), style = 3) else NULL
  done <- 0L
  out <- lapply(batches, function(b) {
    df <- ps_classify_files(url, b, top_k = top_k, timeout = timeout, registration = registration)
    df$path <- b
    done <<- done + length(b)
    if (!is.null(bar)) utils::setTxtProgressBar(bar, done)
    df
  })
  if (!is.null(bar)) close(bar)
  df <- do.call(rbind, out)
  rownames(df) <- NULL
  df
}

#' The served model version as a one-row data.frame: model_version, created, threshold,
#' height, width (input size in pixels), resize (Pillow filter), scale, offset,
#' reference_sha256, manufacturers (comma-separated labels), n_types (stage-2 classes, whole-family
#' classes included), load_seconds.
ps_metadata <- function(url, timeout = 30) {
  doc <- .ps_json(httr::GET(paste0(sub("/$", "", url), "/metadata"), httr::timeout(timeout)))
  pp <- doc$preprocessing
  data.frame(model_version = .chr(doc$model_version), created = .chr(doc$created),
             threshold = .num(doc$threshold), height = as.integer(.num(pp$height)),
             width = as.integer(.num(pp$width)), resize = .chr(pp$resize), scale = .num(pp$scale),
             offset = .num(pp$offset), reference_sha256 = .chr(pp$reference_sha256),
             manufacturers = paste(unlist(doc$labels$manufacturer), collapse = ","),
             n_types = length(unlist(doc$labels$types)), load_seconds = .num(doc$load_seconds),
             stringsAsFactors = FALSE)
}

#' The label set of the served model as a long data.frame, one row per stage-2 class
#' (manufacturer, family, icao_type): a whole-family class ("B787 family") has icao_type NA; a
#' manufacturer without a stage-2 model has one row with family and icao_type NA.
ps_labels <- function(url, timeout = 30) {
  doc <- .ps_json(httr::GET(paste0(sub("/$", "", url), "/metadata"), httr::timeout(timeout)))
  mans <- unlist(doc$labels$manufacturer)
  rows <- lapply(mans, function(m) {
    leaves <- unlist(doc$labels$types[[m]])
    if (!length(leaves)) {
      return(data.frame(manufacturer = m, family = NA_character_, icao_type = NA_character_,
                        stringsAsFactors = FALSE))
    }
    fams <- vapply(leaves, function(t) {
      f <- doc$labels$families[[m]][[t]]
      if (is.null(f)) sub(" family$", "", t) else f
    }, character(1), USE.NAMES = FALSE)
    types <- ifelse(endsWith(leaves, " family"), NA_character_, leaves)
    data.frame(manufacturer = m, family = fams, icao_type = types, stringsAsFactors = FALSE)
  })
  do.call(rbind, rows)
}
