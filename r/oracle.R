# oracle.R: compute, in R, what the parity suite compares with Python — preprocessed tensors
# by every R path and cascade probabilities through reticulate — and save them as one RDS.
#
#   Rscript r/oracle.R --model-dir DIR --out FILE.rds [--batch-size N] IMAGE...
#
# The RDS holds a list:
#   files              the image paths, in order
#   specs              named list of preprocessing specs (the model's, "model"; the model's
#                      with scaled JPEG decoding, jpeg_draft 2, "model_draft"; the R
#                      original's 150x150 nearest /255, "r_original")
#   pixels[[spec]][[m]]   (n, H, W, 3) uint8 values after decode + resize, m in shared, keras,
#                      pure, textbook (NA-filled where that path cannot decode an image)
#   tensors[[spec]][[m]]  (n, H, W, 3) model inputs by path m (shared, keras, pure)
#   errors[[m]]        per image: "" or the error message of path m
#   p_m, p_t           ps_probabilities() of the shared model-spec tensors, computed in
#                      consecutive batches of --batch-size images (p_t: named list)
#   p_m_keras, p_m_pure   stage-1 probabilities of the keras / pure tensors, same batches
#   predict_json       JSON (r/json.R) of ps_predict() on the first batch, as Python's
#                      json.dumps(Cascade.predict(...), separators=(",", ":")) would write it
#   version            the model version
#
# Runs in its own R process (R embedding Python through reticulate): reticulate 1.28
# finalizers release Python objects without the GIL, so reticulate must not run inside an R
# that is itself embedded in Python by rpy2 (see r/README.md).

args <- commandArgs(trailingOnly = TRUE)
file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
r_dir <- dirname(normalizePath(sub("^--file=", "", file_arg[1])))
source(file.path(r_dir, "script_setup.R"))  # RETICULATE_PYTHON, the R side, take()
model_dir <- take("--model-dir")
out <- take("--out")
batch_size <- as.integer(take("--batch-size", "4"))
files <- args
if (is.null(model_dir) || is.null(out) || !length(files)) {
  message("usage: Rscript r/oracle.R --model-dir DIR --out FILE.rds [--batch-size N] IMAGE...")
  quit(status = 2L)
}

cascade <- ps_load_cascade(model_dir)
specs <- list(model = cascade$spec,
              model_draft = modifyList(cascade$spec, list(jpeg_draft = 2L)),
              r_original = list(height = 150L, width = 150L, resize = "nearest", scale = 1 / 255, offset = 0))
n <- length(files)
methods <- c("shared", "keras", "pure", "textbook")
errors <- setNames(lapply(methods, function(m) character(n)), methods)
pixels <- lapply(specs, function(spec) setNames(lapply(methods, function(m) {
  array(NA_real_, c(n, spec$height, spec$width, 3L))
}), methods))
tensors <- lapply(pixels, function(p) p[c("shared", "keras", "pure")])
put <- function(sname, m, i, px, tx = NULL) {
  pixels[[sname]][[m]][i, , , ] <<- px
  if (!is.null(tx)) tensors[[sname]][[m]][i, , , ] <<- tx
}
for (i in seq_len(n)) {
  decoded <- tryCatch(ps_decode_pure(files[i]), error = function(e) e)  # once for every spec
  for (sname in names(specs)) {
    spec <- specs[[sname]]
    r <- tryCatch(put(sname, "shared", i, ps_pixels(files[i], spec, "shared"),
                      ps_preprocess(files[i], spec, "shared")),
                  error = function(e) errors$shared[i] <<- conditionMessage(e))
    r <- tryCatch({
      px <- ps_pixels(files[i], spec, "keras")
      put(sname, "keras", i, px, px * spec$scale + spec$offset)  # = ps_preprocess_keras
    }, error = function(e) errors$keras[i] <<- conditionMessage(e))
    if (inherits(decoded, "error")) {
      errors$pure[i] <- errors$textbook[i] <- conditionMessage(decoded)
    } else {
      px <- ps_resize_pillow(decoded, spec$height, spec$width, spec$resize)
      put(sname, "pure", i, px, ps_scale_f32(px, spec))
      put(sname, "textbook", i, ps_resize_textbook(decoded, spec$height, spec$width, spec$resize))
    }
  }
}

batches <- split(seq_len(n), ceiling(seq_len(n) / batch_size))
stage1 <- function(x) {
  do.call(rbind, lapply(batches, function(b) {
    if (anyNA(x[b, , , , drop = FALSE])) return(matrix(NA_real_, length(b), length(cascade$labels$manufacturer)))
    ps_probabilities(cascade, x[b, , , , drop = FALSE])$p_m
  }))
}
shared <- tensors$model$shared
probs <- lapply(batches, function(b) ps_probabilities(cascade, shared[b, , , , drop = FALSE]))
p_m <- do.call(rbind, lapply(probs, `[[`, "p_m"))
p_t <- lapply(setNames(nm = names(probs[[1]]$p_t)), function(m) do.call(rbind, lapply(probs, function(p) p$p_t[[m]])))
predict_json <- py_json(ps_predict(cascade, shared[batches[[1]], , , , drop = FALSE], top_k = 3L))

result <- list(files = files, specs = specs, pixels = pixels, tensors = tensors, errors = errors,
               p_m = p_m, p_t = p_t, p_m_keras = stage1(tensors$model$keras),
               p_m_pure = stage1(tensors$model$pure), predict_json = predict_json,
               version = cascade$version, batch_size = batch_size)
tmp <- paste0(out, ".tmp")
saveRDS(result, tmp)
invisible(file.rename(tmp, out))
