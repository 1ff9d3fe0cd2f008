# Shared start of the oracle scripts (r/oracle.R, r/oracle_images.R), sourced after they have
# set `r_dir` (this folder) and `args` (their trailing command-line arguments):
# RETICULATE_PYTHON defaults to the project's .venv, the R side is sourced, and `take(name,
# default)` removes "name value" from `args` and returns value (default when absent).

if (!nzchar(Sys.getenv("RETICULATE_PYTHON"))) {
  venv_python <- file.path(dirname(r_dir), ".venv", "bin", "python")
  if (file.exists(venv_python)) Sys.setenv(RETICULATE_PYTHON = venv_python)
}
source(file.path(r_dir, "json.R"))
source(file.path(r_dir, "preprocess.R"))
source(file.path(r_dir, "cascade.R"))

take <- function(name, default = NULL) {
  i <- match(name, args)
  if (is.na(i)) return(default)
  v <- args[i + 1L]
  args <<- args[-c(i, i + 1L)]
  v
}
