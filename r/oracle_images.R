# oracle_images.R: the whole R pipeline on image files — decode, localizer, crop box, crop,
# cascade (ps_predict_images, r/cascade.R) — as JSON lines, for the parity suite to compare with
# Python's json.dumps(Pipeline.predict(...)) byte for byte (tests/r/test_features.py).
#
#   Rscript r/oracle_images.R --model-dir DIR --out FILE [--batch-size N] \
#       [--aircraft-thresholds default,1.0] [--top-k K] [--read] IMAGE...
#
# FILE gets one line per (threshold, batch): "<threshold>\t<first image index, 0-based>\t<JSON>",
# the JSON written by r/json.R as Python's json.dumps(..., separators=(",", ":")) would write it.
# "default" keeps the version's own gate (labels.json / PLANESPOTTER_AIRCRAFT_THRESHOLD); a number
# replaces cascade$aircraft_threshold (Python: Cascade.aircraft_threshold) for that pass.
# --read: registrations are read (Python: Pipeline(cascade, load_configured()).predict(..., read=True)),
# against the configured registry (ps_load_reader; PLANESPOTTER_REGISTRY).
#
# Its own R process, as r/oracle.R (reticulate must not run inside rpy2's embedded R).

args <- commandArgs(trailingOnly = TRUE)
file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
r_dir <- dirname(normalizePath(sub("^--file=", "", file_arg[1])))
source(file.path(r_dir, "script_setup.R"))  # RETICULATE_PYTHON, the R side, take()
model_dir <- take("--model-dir")
out <- take("--out")
batch_size <- as.integer(take("--batch-size", "4"))
top_k <- as.integer(take("--top-k", "3"))
thresholds <- strsplit(take("--aircraft-thresholds", "default"), ",", fixed = TRUE)[[1]]
read <- "--read" %in% args
args <- args[args != "--read"]
files <- args
if (is.null(model_dir) || is.null(out) || !length(files)) {
  message("usage: Rscript r/oracle_images.R --model-dir DIR --out FILE [--batch-size N] ",
          "[--aircraft-thresholds default,1.0] [--top-k K] [--read] IMAGE...")
  quit(status = 2L)
}

cascade <- ps_load_cascade(model_dir)
if (read) cascade$reader <- ps_load_reader()
own <- cascade$aircraft_threshold
starts <- seq(1L, length(files), by = batch_size)
lines <- character(0)
for (t in thresholds) {
  cascade$aircraft_threshold <- if (t == "default") own else as.numeric(t)
  for (s in starts) {
    b <- files[s:min(s + batch_size - 1L, length(files))]
    lines <- c(lines, paste(t, s - 1L, py_json(ps_predict_images(cascade, as.list(b), top_k = top_k, read = read)), sep = "\t"))
  }
}
tmp <- paste0(out, ".tmp")
writeLines(lines, tmp, useBytes = TRUE)
invisible(file.rename(tmp, out))
