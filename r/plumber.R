# plumber.R: the R reference server — a plumber API in the R original's style serving the
# shared contract of our gunicorn server (api/routes/predict.py, api/routes/health.py):
#
#   GET  /names             the original's route: the manufacturer of the default image
#                           (PLANESPOTTER_DEFAULT_IMAGE, else the model version's reference
#                           image), plumber's default JSON serializer (a boxed array, ["Boeing"])
#   GET  /predict?path=     classify an image under PLANESPOTTER_IMAGE_ROOT
#   POST /predict           multipart field `image` (one or several), a raw image/jpeg|png|webp
#                           body, or JSON {"instances": [{"b64": ...}]}
#                           (both: ?registration=1, or "registration": true in a JSON body, reads
#                           the registration painted on the aircraft when a registry is loaded)
#   GET  /ping, /healthz, /readyz, /metadata
#   errors                  {"error": <code>, "message": <text>} with the same codes
#
# It loads our exported .keras models through reticulate (r/cascade.R) and preprocesses with
# the project's one preprocessing through reticulate (r/preprocess.R "shared"), so its answers
# are the Python server's. A version with a localizer answers as ours does: the localizer on
# the request's whole images (one batch), each crop box, the classifier on the crops (one batch);
# answer level "none" (not an aircraft) and "manufacturer" for Other, answer text, aircraft
# gate and box in every /predict body; GET /names answers ["Other"] / ["none"] for those.
# Every prediction carries answer.source ("image" | "registration") and registration (null, or
# the registration read and the registry's type: model.reader through reticulate, joined to the
# answer by ps_fuse, r/cascade.R), as model.pipeline.Pipeline.forward writes them, and unsure_reasons
# (always a JSON array of model.confidence.REASONS codes, [] when sure; also at top level for one
# image, as api.inference.TOP_LEVEL_KEYS): the version's confidence rule (labels.json "confidence":
# novelty, views) is applied as model.cascade.Cascade does (r/cascade.R). /metadata lists the
# reasons in words (unsure_reasons: model.confidence.REASON_TEXT). This server has only the native
# JSON answer: no OIP v2 / TF Serving routes, so no flat "unsure_reasons" string.
# Bodies are written by r/json.R (Python's json.dumps bytes) so they can be compared byte for
# byte; see r/README.md for the differences that remain.
#
# Environment: PLANESPOTTER_MODEL_DIR (default models/latest), PLANESPOTTER_IMAGE_ROOT
# (default "."), PLANESPOTTER_DEFAULT_IMAGE, PLANESPOTTER_THRESHOLD (0.6),
# PLANESPOTTER_TOP_K (3), PLANESPOTTER_MAX_IMAGES_PER_REQUEST (64),
# PLANESPOTTER_MAX_CONTENT_LENGTH (32 MiB, as api/config.py),
# PLANESPOTTER_R_PREPROCESS (shared | keras | pure; default shared), PLANESPOTTER_REGISTRY (the
# aircraft registry, model.registry.load_configured: empty = reading off; default the shared
# one when present), RETICULATE_PYTHON.
# Started by r/serve.R (make r-serve PORT=...).

.ps_r_dir <- Sys.getenv("PLANESPOTTER_R_DIR", "r")
source(file.path(.ps_r_dir, "json.R"), local = TRUE)
source(file.path(.ps_r_dir, "preprocess.R"), local = TRUE)
source(file.path(.ps_r_dir, "cascade.R"), local = TRUE)

.env_or <- function(name, default) {
  v <- Sys.getenv(name, "")
  if (nzchar(v)) v else default
}

CONFIG <- list(
  model_dir = .env_or("PLANESPOTTER_MODEL_DIR", "models/latest"),
  image_root = .env_or("PLANESPOTTER_IMAGE_ROOT", "."),
  default_image = .env_or("PLANESPOTTER_DEFAULT_IMAGE", ""),
  top_k = as.integer(.env_or("PLANESPOTTER_TOP_K", "3")),
  max_images = as.integer(.env_or("PLANESPOTTER_MAX_IMAGES_PER_REQUEST", "64")),
  max_content_length = as.numeric(.env_or("PLANESPOTTER_MAX_CONTENT_LENGTH", as.character(32 * 1024 * 1024))),
  preprocess = .env_or("PLANESPOTTER_R_PREPROCESS", "shared")
)
stopifnot(CONFIG$preprocess %in% PS_PREPROCESS_METHODS)

CASCADE <- ps_load_cascade(CONFIG$model_dir)
# model.registry.load_configured(), once, from the directory serve.R started in (a relative
# PLANESPOTTER_REGISTRY); NULL: registrations are not read.
CASCADE$reader <- local({
  old <- setwd(Sys.getenv("PLANESPOTTER_R_LAUNCH_DIR", getwd()))
  on.exit(setwd(old))
  ps_load_reader()
})
# The reader's status in /readyz and /metadata (api.engine.Engine.registration): available, the
# registry file (str of its path) and its number of entries; null/null without a registry.
REGISTRATION <- if (is.null(CASCADE$reader)) {
  list(available = FALSE, registry = NULL, entries = NULL)
} else {
  local({
    reg <- reticulate::py_get_attr(CASCADE$reader, "registry")
    list(available = TRUE, registry = reticulate::py_to_r(reticulate::import_builtins(convert = FALSE)$str(reg$path)),
         entries = as.integer(reticulate::py_to_r(reg$size)))
  })
}
MODEL_PATH <- normalizePath(CONFIG$model_dir, mustWork = TRUE)  # the version folder just loaded
# Each unsure reason's code in words, for /metadata (model.confidence.REASON_TEXT, in its order).
REASON_TEXT <- reticulate::py_to_r(reticulate::import("model.confidence", convert = FALSE)$REASON_TEXT)
if (!is.null(CASCADE$localizer) && CONFIG$preprocess != "shared") {
  stop("PLANESPOTTER_R_PREPROCESS=", CONFIG$preprocess, " serves versions without a localizer only; ",
       "model version ", CASCADE$version, " has one (localizer.keras): use shared")
}
# Warm up at the batch size of one request, as the Python engine does before /readyz.
invisible(ps_predict(CASCADE, array(0, c(1L, CASCADE$spec$height, CASCADE$spec$width, 3L))))
if (!is.null(CASCADE$localizer)) {
  invisible(CASCADE$localizer$predict_on_batch(
    reticulate::import("numpy", convert = FALSE)$zeros(reticulate::tuple(1L, CASCADE$localizer_size,
                                                                         CASCADE$localizer_size, 3L),
                                                       dtype = "float32")))
}

RAW_IMAGE_TYPES <- c("image/jpeg", "image/png", "image/webp")

# A passthrough body parser: plumber keeps req$bodyRaw and each multipart part's bytes.
plumber::register_parser("ps_raw", function(...) function(value, ...) value, regex = ".*",
                         verbose = FALSE)

# ---------------------------------------------------------------- errors and responses
api_error <- function(status, code, message) {
  stop(structure(class = c("ps_api_error", "error", "condition"),
                 list(message = message, call = NULL, status = status, code = code)))
}

send_json <- function(res, value, status = 200L) {
  body <- paste0(py_json(value), "\n")  # forces `value` first; Flask's jsonify ends with "\n"
  res$status <- status
  res$headers <- res$headers[names(res$headers) != "Content-Type"]  # setHeader appends
  res$setHeader("Content-Type", "application/json")
  res$body <- body
  res
}

send_error <- function(res, status, code, message) {
  send_json(res, list(error = code, message = message), status)
}

# Run a handler; API errors become {"error", "message"} JSON, anything else a 500.
guarded <- function(res, expr_fn) {
  tryCatch(expr_fn(), ps_api_error = function(e) send_error(res, e$status, e$code, conditionMessage(e)),
           error = function(e) send_error(res, 500L, "internal_error",
                                          paste0(class(e)[1], ": ", conditionMessage(e))))
}

# ---------------------------------------------------------------- request helpers
parse_top_k <- function(req) {
  raw <- req$argsQuery$top_k
  raw <- if (is.null(raw)) as.character(CONFIG$top_k) else as.character(raw[[1]])
  # Python's int(): optional sign, digits with single underscores, surrounding whitespace
  if (!grepl("^\\s*[+-]?[0-9]+(_[0-9]+)*\\s*$", raw, perl = TRUE)) {
    api_error(400L, "bad_parameter", sprintf("top_k must be an integer, got %s", py_str_repr(raw)))
  }
  k <- as.numeric(gsub("[_[:space:]]", "", raw))
  if (!(k >= 1 && k <= 50)) api_error(400L, "bad_parameter", "top_k must be between 1 and 50")
  as.integer(k)
}

# Python's repr() of a value parsed from JSON (jsonlite, simplifyVector = FALSE): 'text', 1,
# 1.5, True/False, None, [..], {'key': ..}, for api.inference.wants_registration's message.
py_value_repr <- function(x) {
  if (is.null(x)) return("None")
  if (is.list(x)) {
    if (!is.null(names(x))) {
      return(paste0("{", paste(vapply(seq_along(x), function(i) paste0(py_str_repr(names(x)[i]), ": ",
                                                                       py_value_repr(x[[i]])), character(1)),
                               collapse = ", "), "}"))
    }
    return(paste0("[", paste(vapply(x, py_value_repr, character(1)), collapse = ", "), "]"))
  }
  if (is.logical(x)) return(if (x) "True" else "False")
  if (is.integer(x)) return(as.character(x))
  if (is.double(x)) return(py_float_repr(x))
  py_str_repr(x)
}

# ?registration= words (api.inference.TRUE_WORDS / FALSE_WORDS, case-insensitive).
REGISTRATION_TRUE <- c("1", "true", "yes", "on")
REGISTRATION_FALSE <- c("0", "false", "no", "off", "")

# Whether the request asks for the registration reading (api.inference.wants_registration): a JSON
# body's `registration` field when it has one (true/false, anything else a 400), else the query's
# ?registration= word; absent: no.
wants_registration <- function(req, body_value = NULL, where = "registration") {
  if (!is.null(body_value)) {
    if (!is.logical(body_value) || length(body_value) != 1L || is.na(body_value)) {
      api_error(400L, "bad_parameter", sprintf("%s must be true or false, got %s", where, py_value_repr(body_value)))
    }
    return(body_value)
  }
  raw <- req$argsQuery[["registration"]]  # exact name: `$` would match ?registrations=
  if (is.null(raw)) return(FALSE)
  raw <- as.character(raw[[1]])
  word <- tolower(trimws(raw, whitespace = "[\\h\\v]"))  # str.strip().lower()
  if (!(word %in% c(REGISTRATION_TRUE, REGISTRATION_FALSE))) {
    api_error(400L, "bad_parameter", sprintf("registration must be 1 or 0 (true/false), got %s", py_str_repr(raw)))
  }
  word %in% REGISTRATION_TRUE
}

# Python's Path.resolve(strict=False): symlinks of existing parts resolved, "." and ".."
# folded lexically after them.
py_resolve <- function(path) {
  parts <- strsplit(path, "/", fixed = TRUE)[[1]]
  cur <- ""
  for (p in parts) {
    if (p == "" || p == ".") next
    if (p == "..") {
      cur <- dirname(if (nzchar(cur)) cur else "/")
      if (cur == "/") cur <- ""
      next
    }
    nxt <- paste0(cur, "/", p)
    if (nzchar(Sys.readlink(nxt))) nxt <- normalizePath(nxt, mustWork = FALSE)
    cur <- nxt
  }
  if (nzchar(cur)) cur else "/"
}

resolve_under_root <- function(rel) {
  if (!nzchar(rel)) api_error(400L, "missing_parameter", "give ?path=<image path relative to the image root>")
  if (startsWith(rel, "/") || startsWith(rel, "\\") || (nchar(rel) > 1L && substr(rel, 2L, 2L) == ":")) {
    api_error(400L, "bad_path", "path must be relative to the image root")
  }
  root <- py_resolve(normalizePath(CONFIG$image_root, mustWork = FALSE))
  target <- py_resolve(paste0(root, "/", rel))
  if (target != root && !startsWith(target, paste0(sub("/$", "", root), "/"))) {
    api_error(403L, "forbidden_path", "path escapes the image root")
  }
  if (!file.exists(target) || dir.exists(target)) {
    api_error(404L, "not_found", sprintf("no image at %s under the image root", py_str_repr(rel)))
  }
  target
}

read_file_raw <- function(path) readBin(path, "raw", file.info(path)$size)

# (name, bytes) pairs of every image in a POST body, with attribute "read": whether the
# registration is asked for (a JSON body's `registration` field, else ?registration=).
images_from_request <- function(req) {
  images <- request_images(req)
  structure(images, read = wants_registration(req, attr(images, "body_registration")))
}

request_images <- function(req) {
  if (length(req$bodyRaw) > CONFIG$max_content_length) {  # Flask's MAX_CONTENT_LENGTH answer
    api_error(413L, "request_entity_too_large",  # api/errors.py body_too_large_message
              sprintf("the request body is larger than the limit of %.0f bytes (PLANESPOTTER_MAX_CONTENT_LENGTH)",
                      CONFIG$max_content_length))
  }
  ctype <- tolower(trimws(sub(";.*$", "", req$HTTP_CONTENT_TYPE %||% "")))
  if (ctype == "multipart/form-data") {
    parts <- req$body
    files <- Filter(function(p) is.list(p) && identical(p$name, "image") && !is.null(p$filename), parts)
    if (!length(files)) api_error(400L, "missing_field", "multipart body has no 'image' file field")
    return(lapply(seq_along(files), function(i) {
      p <- files[[i]]
      value <- p$parsed %||% p$value
      if (!is.raw(value)) value <- raw(0)
      list(name = if (nzchar(p$filename)) p$filename else sprintf("image%d", i - 1L), data = value)
    }))
  }
  if (ctype %in% RAW_IMAGE_TYPES) return(list(list(name = "body", data = req$bodyRaw %||% raw(0))))
  if (ctype == "application/json") {
    body <- req$bodyRaw %||% raw(0)
    text <- if (length(body)) rawToChar(body) else "null"
    doc <- tryCatch(jsonlite::parse_json(text, simplifyVector = FALSE),
                    error = function(e) api_error(400L, "bad_json", "request body is not valid JSON"))
    instances <- if (is.list(doc) && !is.null(names(doc))) doc$instances else NULL
    if (!is.list(instances) || !is.null(names(instances)) || !length(instances)) {
      api_error(400L, "bad_json", 'expected {"instances": [{"b64": "<base64 image>"}, ...]}')
    }
    images <- lapply(seq_along(instances), function(i) {
      inst <- instances[[i]]
      b64 <- if (is.list(inst) && !is.null(names(inst))) inst$b64 else NULL
      if (!is.character(b64) || length(b64) != 1L) {
        api_error(400L, "bad_json", sprintf("instances[%d] has no 'b64' string", i - 1L))
      }
      if (!grepl("^[A-Za-z0-9+/]*={0,2}$", b64) || nchar(b64) %% 4L != 0L) {
        api_error(400L, "bad_base64", sprintf("instances[%d].b64 is not valid base64", i - 1L))
      }
      list(name = sprintf("instances[%d]", i - 1L), data = jsonlite::base64_dec(b64))
    })
    return(structure(images, body_registration = doc[["registration"]]))
  }
  api_error(415L, "unsupported_media_type",
            paste0("send multipart/form-data with an 'image' field, a raw image/jpeg|png|webp body, ",
                   'or application/json {"instances": [{"b64": ...}]}'))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

decode_all <- function(images) {
  n <- length(images)
  spec <- CASCADE$spec
  if (CONFIG$preprocess == "shared") {
    np <- reticulate::import("numpy", convert = FALSE)
    arrays <- vector("list", n)
    for (i in seq_len(n)) {
      arrays[[i]] <- tryCatch(ps_preprocess_shared_np(images[[i]]$data, spec, CASCADE$py_spec),
                              ps_decode_error = function(e) {
                                api_error(if (e$code == "too_large") 413L else 400L,
                                          paste0(e$code, "_image"),
                                          paste0(images[[i]]$name, ": ", conditionMessage(e)))
                              })
    }
    return(np$stack(arrays))
  }
  x <- array(0, c(n, spec$height, spec$width, 3L))
  for (i in seq_len(n)) {
    x[i, , , ] <- tryCatch(ps_preprocess(images[[i]]$data, spec, CONFIG$preprocess),
                           ps_decode_error = function(e) {
                             api_error(400L, paste0(e$code, "_image"),
                                       paste0(images[[i]]$name, ": ", conditionMessage(e)))
                           },
                           error = function(e) {
                             api_error(400L, "unreadable_image",
                                       paste0(images[[i]]$name, ": cannot decode image: ", conditionMessage(e)))
                           })
  }
  x
}

# The localizer path (a version with localizer.keras, shared preprocessing): every image
# decoded once for both phases (ps_decode_for_crop: a large JPEG at the spec's DCT scale),
# API errors as in decode_all.
decode_images <- function(images) {
  lapply(images, function(im) {
    tryCatch(ps_decode_for_crop(CASCADE, im$data), ps_decode_error = function(e) {
      api_error(if (e$code == "too_large") 413L else 400L, paste0(e$code, "_image"),
                paste0(im$name, ": ", conditionMessage(e)))
    })
  })
}

# Keys of a single image's prediction repeated at the top level (api.inference.TOP_LEVEL_KEYS).
TOP_LEVEL_KEYS <- c("manufacturer", "family", "type", "answer", "aircraft", "box", "unsure", "unsure_reasons",
                    "registration")

# The registration of every image (ps_read_registration: inside its box when there is one), or
# NULLs when not asked or without a registry.
read_all <- function(images, boxes, read) {
  lapply(seq_along(images), function(i) if (read) ps_read_registration(CASCADE, images[[i]]$data, boxes[[i]]))
}

# Decode, classify (reading registrations when `read`) and wrap the results with the model
# version and timing (the native answer, api.inference.native_body).
classify <- function(images, top_k, read = FALSE) {
  if (!length(images)) api_error(400L, "no_images", "the request holds no image")
  if (length(images) > CONFIG$max_images) {
    api_error(413L, "too_many_images", sprintf("at most %d images per request, got %d", CONFIG$max_images,
                                               length(images)))
  }
  t0 <- Sys.time()
  if (is.null(CASCADE$localizer)) {
    x <- decode_all(images)
    readings <- read_all(images, NULL, read)
    t1 <- Sys.time()
    results <- ps_predict(CASCADE, x, top_k = top_k)
  } else {  # api.inference._run_two_phase: localizer batch, boxes, crops, classifier batch
    np <- reticulate::import("numpy", convert = FALSE)
    decoded <- decode_images(images)
    sizes <- lapply(decoded, function(d) d$size)
    loc <- ps_locate(CASCADE, np$stack(lapply(decoded, function(d) ps_localizer_input(CASCADE, d$img, d$scale))),
                     sizes)
    x <- np$stack(lapply(seq_along(decoded), function(i)
      ps_preprocess_image(CASCADE, decoded[[i]]$img, loc$boxes[[i]], decoded[[i]]$scale)))
    readings <- read_all(images, loc$boxes, read)
    t1 <- Sys.time()
    results <- ps_predict(CASCADE, x, top_k = top_k, boxes = loc$boxes, aircraft = loc$aircraft)
  }
  t2 <- Sys.time()
  predictions <- lapply(seq_along(results), function(i) {
    c(list(file = images[[i]]$name), ps_fuse(results[[i]], readings[[i]]))  # Pipeline.forward's answers
  })
  body <- list(model_version = CASCADE$version)
  if (length(predictions) == 1L) {
    body <- c(body, predictions[[1]][TOP_LEVEL_KEYS])  # `[` keeps NULL values (box)
  }
  body$predictions <- predictions
  ms <- function(a, b) round(as.numeric(difftime(b, a, units = "secs")) * 1000, 2)
  body$timing_ms <- list(decode = ms(t0, t1), inference = ms(t1, t2))
  body
}

# The loaded version's reference image (model.io.reference_image_bytes: its reference.png, or
# the same image regenerated for versions exported before that file existed; checked against
# preprocessing.json's reference_sha256), read once. GET /names classifies it when no default
# image is configured, as our server does.
.reference_cache <- new.env()
reference_image <- function() {
  if (is.null(.reference_cache$data)) {
    mio <- reticulate::import("model.io", convert = FALSE)
    py <- reticulate::import_builtins(convert = FALSE)
    .reference_cache$data <- tryCatch(
      as.raw(unlist(reticulate::py_to_r(py$list(mio$reference_image_bytes(MODEL_PATH))))),  # bytes -> raw
      error = function(e) api_error(500L, "bad_reference_image", conditionMessage(e)))
  }
  .reference_cache$data
}

# ---------------------------------------------------------------- routes

# Methods of each route, for werkzeug-style 405 answers (plumber's own 405 body is
# {"error":"405 - Method Not Allowed"} and cannot be replaced by a handler).
ROUTE_METHODS <- list("/ping" = "GET", "/healthz" = "GET", "/readyz" = "GET", "/metadata" = "GET",
                      "/names" = "GET", "/predict" = c("GET", "POST"))

#* @filter method_not_allowed
function(req, res) {
  allowed <- ROUTE_METHODS[[req$PATH_INFO]]
  if (!is.null(allowed) && !(req$REQUEST_METHOD %in% c(allowed, "HEAD", "OPTIONS"))) {
    return(send_error(res, 405L, "method_not_allowed", "The method is not allowed for the requested URL."))
  }
  plumber::forward()
}

#* Plumber/vetiver-style ping
#* @get /ping
function(req, res) send_json(res, list(status = "online"))

#* Liveness
#* @get /healthz
function(req, res) send_json(res, list(status = "alive"))

#* Readiness: the models load before plumber listens, so this is always ready
#* @get /readyz
function(req, res) {
  send_json(res, list(status = "ready", reason = "ok", model_version = CASCADE$version,
                      registration = REGISTRATION))
}

#* The model version, labels, preprocessing and training metrics
#* @get /metadata
function(req, res) {
  guarded(res, function() {
    metrics <- CASCADE$info$metrics
    calib <- metrics$calibration %||% json_object()
    calib_out <- json_object()
    for (k in names(calib)) {
      v <- calib[[k]]
      calib_out[[k]] <- list(temperature = v$temperature, val_ece_before = v$val_ece_before,
                             val_ece_after = v$val_ece_after)
    }
    send_json(res, list(
      model_version = CASCADE$version, created = CASCADE$created,
      labels = CASCADE$info$labels, preprocessing = CASCADE$info$preprocessing,
      threshold = CASCADE$threshold,
      metrics = list(test = metrics$test %||% json_object(), calibration = calib_out),
      load_seconds = CASCADE$load_seconds, stages = as.list(ps_stages(CASCADE)), unsure_reasons = REASON_TEXT,
      registration = REGISTRATION))
  })
}

#* The R original's route: the manufacturer of the default image
#* @get /names
#* @serializer json
function(req, res) {
  rel <- CONFIG$default_image
  out <- tryCatch({
    image <- if (nzchar(rel)) {
      list(name = rel, data = read_file_raw(resolve_under_root(rel)))
    } else {
      list(name = "reference.png", data = reference_image())
    }
    body <- classify(list(image), 1L)
    if (body$answer$level == "none") "none" else body$manufacturer$label  # "Other" stays "Other"
  }, ps_api_error = function(e) send_error(res, e$status, e$code, conditionMessage(e)))
  out
}

#* Classify an image under the image root
#* @get /predict
function(req, res) {
  guarded(res, function() {
    top_k <- parse_top_k(req)
    read <- wants_registration(req)
    url <- req$argsQuery$url
    rel <- req$argsQuery$path
    if (!is.null(url) && !is.null(rel)) api_error(400L, "bad_parameter", "give either ?path= or ?url=, not both")
    if (!is.null(url)) {  # our server fetches URLs only when enabled (off by default); R never does
      api_error(403L, "url_fetch_disabled",
                "fetching images by URL is disabled on this server (PLANESPOTTER_URL_FETCH)")
    }
    rel <- if (is.null(rel)) "" else as.character(rel[[1]])
    target <- resolve_under_root(rel)
    send_json(res, classify(list(list(name = rel, data = read_file_raw(target))), top_k, read = read))
  })
}

#* Classify the image(s) in the body
#* @post /predict
#* @parser multi
#* @parser ps_raw
function(req, res) {
  guarded(res, function() {
    top_k <- parse_top_k(req)
    images <- images_from_request(req)
    send_json(res, classify(images, top_k, read = attr(images, "read")))
  })
}

#* @plumber
function(pr) {
  pr |>
    plumber::pr_set_404(function(req, res) {
      send_error(res, 404L, "not_found", paste(
        "The requested URL was not found on the server. If you entered the URL manually",
        "please check your spelling and try again."))
    }) |>
    plumber::pr_set_error(function(req, res, err) {
      send_error(res, 500L, "internal_error", conditionMessage(err))
    })
}
