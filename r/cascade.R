# cascade.R: our exported model version, loaded and run from R through reticulate — what
# R keras itself does underneath (keras.models.load_model on the same .keras files).
#
# The routing is R code, a port of model/cascade.py: stage 1 gives manufacturer
# probabilities; when the best one reaches the threshold the image goes to that
# manufacturer's type model, else ("unsure") both leading branches are evaluated and report
# their best type with the joint probability P(manufacturer) * P(type | manufacturer).
# Stage-2 models see exactly the rows Python would give them (same batch composition), since
# oneDNN's float results depend on the batch size (../shared/notes/stack.md).
#
# Needs RETICULATE_PYTHON = the project's venv python (r/serve.R sets it when unset).

#' Load a model version folder.
#'
#' @param model_dir version folder (models/latest is followed).
#' @param threshold routing threshold in [0, 1]; default PLANESPOTTER_THRESHOLD or 0.6.
#' @param type_threshold P(type | manufacturer) a type needs to be named (else the answer stops
#'   at the family); default PLANESPOTTER_TYPE_THRESHOLD, else labels.json's type_threshold, else 0.5.
#' @return a list: version, created, labels (list(manufacturer = chr, types = named list)),
#'   spec (preprocessing.json as a list), info (labels/preprocessing/metrics as parsed from
#'   JSON, for /metadata), stage1 (Keras model), stage2 (named list of Keras models),
#'   threshold, type_threshold, py_spec (the Python PreprocessingSpec), load_seconds.
#' Errors when the folder fails model.io.check_version (missing/corrupt files) or when this
#' installation's preprocessing checksum differs from the one saved at training.
ps_load_cascade <- function(model_dir, threshold = NULL, type_threshold = NULL) {
  t0 <- Sys.time()
  model_dir <- normalizePath(model_dir, mustWork = TRUE)
  mio <- reticulate::import("model.io", convert = FALSE)
  keras <- reticulate::import("keras", convert = FALSE)
  manifest <- reticulate::py_to_r(mio$check_version(model_dir))  # same checks as Python
  read_json <- function(name) {
    f <- file.path(model_dir, name)
    if (file.exists(f)) jsonlite::fromJSON(f, simplifyVector = FALSE) else json_object()
  }
  labels <- read_json("labels.json")
  preprocessing <- read_json("preprocessing.json")
  metrics <- read_json("metrics.json")
  spec <- ps_read_spec(model_dir)
  py_spec <- ps_py_spec(spec)
  pp <- reticulate::import("model.preprocessing", convert = FALSE)
  expected <- preprocessing$reference_sha256
  if (!is.null(expected) && expected != reticulate::py_to_r(pp$reference_checksum(py_spec))) {
    stop(model_dir, ": this installation preprocesses differently from training ",
         "(reference checksum mismatch; check the Pillow version)")
  }
  load <- function(f) keras$models$load_model(file.path(model_dir, f), compile = FALSE)
  stage1 <- load("manufacturer.keras")
  stage2 <- list()
  for (m in names(labels$types)) {
    f <- sprintf("type_%s.keras", m)
    if (file.exists(file.path(model_dir, f))) stage2[[m]] <- load(f)
  }
  if (is.null(threshold)) threshold <- as.numeric(Sys.getenv("PLANESPOTTER_THRESHOLD", "0.6"))
  if (is.null(type_threshold)) {
    default <- if (is.null(labels$type_threshold)) "0.5" else as.character(labels$type_threshold)
    type_threshold <- as.numeric(Sys.getenv("PLANESPOTTER_TYPE_THRESHOLD", default))
  }
  list(version = manifest$version, created = manifest$created,
       labels = list(manufacturer = unlist(labels$manufacturer),
                     types = lapply(labels$types, unlist)),
       spec = spec, py_spec = py_spec,
       info = list(labels = labels, preprocessing = preprocessing, metrics = metrics),
       stage1 = stage1, stage2 = stage2, threshold = threshold, type_threshold = type_threshold,
       load_seconds = as.numeric(difftime(Sys.time(), t0, units = "secs")))
}

.np <- function() reticulate::import("numpy", convert = FALSE)

#' A float32 NumPy batch from an R array (n, H, W, 3) or a NumPy array (passed through).
ps_as_batch <- function(x) {
  if (inherits(x, "python.builtin.object")) return(.np()$asarray(x, dtype = "float32"))
  .np()$asarray(reticulate::r_to_py(x), dtype = "float32")
}

#' Raw forward passes with routing (model.cascade.Cascade.probabilities).
#'
#' @param x float32-valued (n, H, W, 3) R array, or a NumPy float32 array.
#' @return list(p_m = n x M matrix of stage-1 probabilities (doubles holding float32
#'   values), p_t = named list of n x T_m matrices; rows not routed to a manufacturer are NaN).
ps_probabilities <- function(cascade, x) {
  xb <- ps_as_batch(x)
  p_m <- reticulate::py_to_r(cascade$stage1$predict_on_batch(xb))
  p_m <- matrix(as.double(p_m), nrow = nrow(p_m))
  n <- nrow(p_m)
  mans <- cascade$labels$manufacturer
  ord <- t(apply(p_m, 1, function(r) order(-r, method = "radix")))
  if (n == 1L || length(mans) == 1L) ord <- matrix(ord, nrow = n)
  top <- ord[, 1]
  confident <- apply(p_m, 1, max) >= cascade$threshold
  second <- if (ncol(p_m) > 1L) ord[, 2] else top
  p_t <- list()
  for (j in seq_along(mans)) {
    m <- mans[j]
    model <- cascade$stage2[[m]]
    if (is.null(model)) next
    rows <- which(top == j | (!confident & second == j))
    out <- matrix(NaN, n, length(cascade$labels$types[[m]]))
    if (length(rows)) {
      sub <- xb$`__getitem__`(.np()$asarray(array(as.integer(rows - 1L))))  # 1-d index array, even for one row
      pr <- reticulate::py_to_r(model$predict_on_batch(sub))
      out[rows, ] <- matrix(as.double(pr), nrow = length(rows))
    }
    p_t[[m]] <- out
  }
  list(p_m = p_m, p_t = p_t)
}

#' The family of each stage-2 leaf of manufacturer m (model.cascade.leaf_families): labels.json's
#' "families" map, else the ICAO family table (scrape.families.family_of, through reticulate) for
#' versions trained before families existed; "<F> family" leaves give F.
ps_leaf_families <- function(cascade, m) {
  leaves <- cascade$labels$types[[m]]
  known <- cascade$info$labels$families[[m]]
  fam_of <- NULL
  vapply(leaves, function(t) {
    f <- known[[t]]
    if (!is.null(f) && nzchar(f)) return(f)
    if (endsWith(t, PS_FAMILY_LEAF_SUFFIX)) return(substr(t, 1L, nchar(t) - nchar(PS_FAMILY_LEAF_SUFFIX)))
    if (is.null(fam_of)) fam_of <<- reticulate::import("scrape.families")$family_of
    f <- fam_of(t)
    if (nzchar(f)) f else t
  }, character(1), USE.NAMES = FALSE)
}

PS_FAMILY_LEAF_SUFFIX <- " family"

#' One manufacturer's answer (model.cascade.Cascade.branch): best family by summed leaf
#' probability (ties: first in output order), the best leaf as type only when it is an ICAO type
#' with probability >= the type threshold.
ps_branch <- function(cascade, m, pm, pt) {
  out <- list(manufacturer = m, manufacturer_probability = pm, family = NULL, family_probability = NULL,
              type = NULL, type_probability = NULL, joint_probability = pm)
  if (is.null(pt) || is.nan(pt[1])) return(out)
  leaves <- cascade$labels$types[[m]]
  fams <- ps_leaf_families(cascade, m)
  ufams <- unique(fams)
  totals <- vapply(ufams, function(f) { tot <- 0; for (q in which(fams == f)) tot <- tot + pt[q]; tot },
                   numeric(1))
  fb <- ufams[which.max(totals)]
  out$family <- fb
  out$family_probability <- totals[[which.max(totals)]]
  out$joint_probability <- pm * out$family_probability
  k <- which.max(pt)
  if (!endsWith(leaves[k], PS_FAMILY_LEAF_SUFFIX) && pt[k] >= cascade$type_threshold) {
    out$type <- leaves[k]
    out$type_probability <- pt[k]
    out$joint_probability <- pm * pt[k]
  }
  out
}

#' Classify preprocessed images (model.cascade.Cascade.predict): one list per image with
#' manufacturer, family, type, answer, unsure, branches and top_k, in the same key order as
#' Python's dicts.
ps_predict <- function(cascade, x, top_k = 3L) {
  pr <- ps_probabilities(cascade, x)
  p_m <- pr$p_m
  p_t <- pr$p_t
  mans <- cascade$labels$manufacturer
  results <- vector("list", nrow(p_m))
  for (i in seq_len(nrow(p_m))) {
    ord <- order(-p_m[i, ], method = "radix")
    unsure <- p_m[i, ord[1]] < cascade$threshold
    branches <- list()
    pair_p <- numeric(0); pair_m <- character(0); pair_f <- list(); pair_t <- list()
    for (j in ord[seq_len(if (unsure) min(2L, length(ord)) else 1L)]) {
      m <- mans[j]
      pm <- p_m[i, j]
      pt <- if (!is.null(p_t[[m]])) p_t[[m]][i, ] else NULL
      branches[[length(branches) + 1L]] <- ps_branch(cascade, m, pm, pt)
      if (!is.null(pt) && !is.nan(pt[1])) {
        leaves <- cascade$labels$types[[m]]
        fams <- ps_leaf_families(cascade, m)
        pair_p <- c(pair_p, pm * pt); pair_m <- c(pair_m, rep(m, length(pt)))
        pair_f <- c(pair_f, as.list(fams))
        pair_t <- c(pair_t, lapply(leaves, function(t) if (endsWith(t, PS_FAMILY_LEAF_SUFFIX)) NULL else t))
      } else {
        pair_p <- c(pair_p, pm); pair_m <- c(pair_m, m); pair_f <- c(pair_f, list(NULL))
        pair_t <- c(pair_t, list(NULL))
      }
    }
    best <- branches[[1]]
    level <- if (!is.null(best$type)) "type" else if (!is.null(best$family)) "family" else "manufacturer"
    label <- switch(level, type = best$type, family = paste0(best$family, PS_FAMILY_LEAF_SUFFIX),
                    manufacturer = best$manufacturer)
    po <- order(-pair_p, method = "radix")[seq_len(min(max(1L, top_k), length(pair_p)))]
    results[[i]] <- list(
      manufacturer = list(label = best$manufacturer, probability = best$manufacturer_probability),
      family = list(label = best$family, probability = best$family_probability,
                    joint_probability = if (is.null(best$family)) NULL
                                        else best$manufacturer_probability * best$family_probability),
      type = list(label = best$type, probability = best$type_probability,
                  joint_probability = if (is.null(best$type)) NULL else best$joint_probability),
      answer = list(level = level, label = label),
      unsure = unsure,
      branches = branches,
      top_k = lapply(po, function(q) list(manufacturer = pair_m[q], family = pair_f[[q]], type = pair_t[[q]],
                                          probability = pair_p[q])))
  }
  results
}
