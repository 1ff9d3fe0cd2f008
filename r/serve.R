# serve.R: start the R reference server (r/plumber.R) in the foreground.
#
#   Rscript r/serve.R [--port 8100] [--host 127.0.0.1]
#   make r-serve PORT=8100
#
# Relative PLANESPOTTER_MODEL_DIR / PLANESPOTTER_IMAGE_ROOT / PLANESPOTTER_REGISTRY are taken
# from the current directory (plumber evaluates the API file with its own working directory). RETICULATE_PYTHON
# defaults to the project's .venv/bin/python.

args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (!is.na(i) && i < length(args)) return(args[i + 1L])
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) return(sub(paste0("^--", name, "="), "", hit[1]))
  default
}
port <- as.integer(opt("port", Sys.getenv("PORT", "8100")))
host <- opt("host", "127.0.0.1")
if (is.na(port) || port < 1L || port > 65535L) {
  message("serve.R: --port must be a TCP port number")
  quit(status = 2L)
}

file_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
r_dir <- if (length(file_arg)) dirname(normalizePath(sub("^--file=", "", file_arg[1]))) else normalizePath("r")
repo <- dirname(r_dir)
Sys.setenv(PLANESPOTTER_R_DIR = r_dir)
if (!nzchar(Sys.getenv("RETICULATE_PYTHON"))) {
  venv_python <- file.path(repo, ".venv", "bin", "python")
  if (file.exists(venv_python)) Sys.setenv(RETICULATE_PYTHON = venv_python)
}
for (v in c("PLANESPOTTER_MODEL_DIR", "PLANESPOTTER_IMAGE_ROOT")) {
  val <- Sys.getenv(v, "")
  if (nzchar(val)) do.call(Sys.setenv, structure(list(normalizePath(val, mustWork = FALSE)), names = v))
}
if (!nzchar(Sys.getenv("PLANESPOTTER_MODEL_DIR"))) {
  Sys.setenv(PLANESPOTTER_MODEL_DIR = normalizePath(file.path(getwd(), "models", "latest"), mustWork = FALSE))
}
if (!nzchar(Sys.getenv("PLANESPOTTER_IMAGE_ROOT"))) Sys.setenv(PLANESPOTTER_IMAGE_ROOT = getwd())
# A relative PLANESPOTTER_REGISTRY is read from here, and reported as given (as our server does).
Sys.setenv(PLANESPOTTER_R_LAUNCH_DIR = getwd())
Sys.setenv(TF_CPP_MIN_LOG_LEVEL = Sys.getenv("TF_CPP_MIN_LOG_LEVEL", "2"))

api <- tryCatch(plumber::pr(file.path(r_dir, "plumber.R")), error = function(e) {
  message("serve.R: cannot start the R server: ", conditionMessage(e))
  quit(status = 1L)
})
message(sprintf("R plumber server (model %s) listening on http://%s:%d",
                Sys.getenv("PLANESPOTTER_MODEL_DIR"), host, port))
plumber::pr_run(api, host = host, port = port, docs = FALSE, quiet = TRUE)
