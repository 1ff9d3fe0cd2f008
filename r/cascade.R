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
# Versions with a localizer (localizer.keras) are ported too (model/cascade.py, model/localize.py):
# the localizer runs on the whole images (ps_locate: aircraft probability and activation map, one
# batch), model.localize.box_from_cam (through reticulate) gives each crop box when
# preprocessing.json has a crop rule, the shared preprocessing cuts and resizes the crop
# (ps_preprocess_image), an aircraft probability below labels.json's aircraft_threshold
# (PLANESPOTTER_AIRCRAFT_THRESHOLD) answers level "none"; labels.json's tta = "flip" averages
# every model's probabilities over the batch and its mirror image (a second batch of the same
# size); a manufacturer without stage 2 ("Other") answers at level "manufacturer".
#
# The confidence rule (labels.json's "confidence", model.confidence.ConfidenceRule) is ported as
# model/cascade.py applies it: with a novelty threshold the version's feature bank (novelty.npz,
# model.confidence.load_bank) is loaded and stage 1 runs as model.confidence.feature_model (its
# probabilities and penultimate features in one pass), the novelty being
# model.confidence.knn_distance; with views the mirror image and model.confidence.zoom's crop
# are classified too (all through reticulate: one implementation). An unusual photo or views
# that disagree make the answer unsure like a low stage-1 probability (both branches), and
# every answer carries unsure_reasons (ps_unsure_reasons, the port of
# model.cascade.Cascade.unsure_reasons).
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
#'   threshold, type_threshold, py_spec (the Python PreprocessingSpec), load_seconds;
#'   localizer (Keras model or NULL), localizer_size (its square input, pixels, or NULL),
#'   aircraft_threshold (the gate: labels.json's, PLANESPOTTER_AIRCRAFT_THRESHOLD overriding it
#'   when there is a localizer; NULL when absent), crop_rule (Python model.preprocessing.CropRule, or
#'   NULL without localizer or crop rule), tta ("flip" or NULL);
#'   confidence (ps_confidence_rule of labels.json's "confidence"), bank (the feature bank, a
#'   NumPy float32 (N, D) array from model.confidence.load_bank, or NULL: loaded when the rule
#'   has a novelty threshold), features (model.confidence.feature_model(stage1), or NULL),
#'   novelty (TRUE: unusual photos are flagged, Cascade.novelty), views (TRUE: the mirror image
#'   and the zoomed crop must agree, Cascade.views).
#' Errors when the folder fails model.io.check_version (missing/corrupt files), when this
#' installation's preprocessing checksum differs from the one saved at training, or when the
#' rule sets a novelty threshold and novelty.npz cannot be read (Cascade.load's ModelLoadError).
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
  expected <- preprocessing$reference_sha256
  # the checksum of the version's own reference image (reference.png, or the synthetic one of older versions)
  if (!is.null(expected) && expected != reticulate::py_to_r(mio$reference_checksum(model_dir, py_spec))) {
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
  localizer <- if (file.exists(file.path(model_dir, "localizer.keras"))) load("localizer.keras") else NULL
  aircraft_threshold <- labels$aircraft_threshold  # Cascade.load: the JSON value, or the override
  if (!is.null(localizer) && !is.null(aircraft_threshold)) {
    env <- Sys.getenv("PLANESPOTTER_AIRCRAFT_THRESHOLD", "")
    aircraft_threshold <- if (nzchar(env)) as.numeric(env) else as.double(aircraft_threshold)
  }
  crop_rule <- NULL
  if (!is.null(localizer) && !is.null(preprocessing$crop)) {  # PreprocessingSpec.crop_rule
    loc <- reticulate::import("model.localize", convert = FALSE)
    json <- reticulate::import("json", convert = FALSE)
    doc <- json$loads(paste(readLines(file.path(model_dir, "preprocessing.json"), warn = FALSE), collapse = "\n"))
    crop_rule <- loc$CropRule$from_dict(doc$get("crop"))  # the same dict Python reads
  }
  tta <- labels$tta
  if (!is.null(tta) && !nzchar(tta)) tta <- NULL
  confidence <- ps_confidence_rule(labels$confidence)
  bank <- features <- NULL
  if (!is.null(confidence$novelty_threshold)) {  # Cascade.load: the bank, else the version does not load
    mconf <- reticulate::import("model.confidence", convert = FALSE)
    bank <- tryCatch(mconf$load_bank(model_dir), error = function(e) {
      stop(model_dir, ": labels.json sets a novelty threshold but ", PS_BANK_FILE, " cannot be read (",
           conditionMessage(e), ")", call. = FALSE)
    })
    features <- mconf$feature_model(stage1)  # Cascade.stage1_signals builds it on first use: same layers, same weights
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
       localizer = localizer,
       localizer_size = if (is.null(localizer)) NULL
                        else as.integer(reticulate::py_to_r(localizer$input_shape)[[2]]),
       aircraft_threshold = aircraft_threshold, crop_rule = crop_rule, tta = tta,
       confidence = confidence, bank = bank, features = features, novelty = !is.null(bank),
       views = confidence$views,
       load_seconds = as.numeric(difftime(Sys.time(), t0, units = "secs")))
}

.np <- function() reticulate::import("numpy", convert = FALSE)

#' A float32 NumPy batch from an R array (n, H, W, 3) or a NumPy array (passed through).
ps_as_batch <- function(x) {
  if (inherits(x, "python.builtin.object")) return(.np()$asarray(x, dtype = "float32"))
  .np()$asarray(reticulate::r_to_py(x), dtype = "float32")
}

#' One model's probabilities for a batch (the inner run() of Cascade.probabilities): doubles
#' holding the float32 outputs; with tta = "flip" the mean of the batch's and its mirror
#' image's (x[:, :, ::-1], a second batch of the same size), computed in double as Python does.
.ps_run_model <- function(cascade, model, rows) {
  p <- .ps_as_matrix(model$predict_on_batch(rows))
  if (identical(cascade$tta, "flip")) p <- (p + .ps_as_matrix(model$predict_on_batch(.ps_mirror(rows)))) / 2
  p
}

#' The unsure reasons, in the order they are reported (model.confidence.REASONS).
PS_UNSURE_REASONS <- c("low_confidence", "unusual_photo", "views_disagree", "types_close")
PS_BANK_FILE <- "novelty.npz"  # model.confidence.BANK_FILE

#' The confidence rule of a version (model.confidence.ConfidenceRule.from_labels) from labels.json's
#' "confidence" as jsonlite parses it (simplifyVector = FALSE; NULL or absent: every default).
#'
#' @return list(novelty_threshold = double or NULL (novelty off), k = integer (the neighbour whose
#'   distance counts), views = TRUE/FALSE, types_close = double or NULL (never "types_close")).
#'   A key absent from the labels keeps its default (NULL, 10, FALSE, 0.5); a key present as null
#'   is NULL, as Python's None.
ps_confidence_rule <- function(d) {
  out <- list(novelty_threshold = NULL, k = 10L, views = FALSE, types_close = 0.5)
  if (is.list(d)) for (key in intersect(names(out), names(d))) out[key] <- list(d[[key]])
  if (!is.null(out$novelty_threshold)) out$novelty_threshold <- as.double(out$novelty_threshold)
  if (!is.null(out$types_close)) out$types_close <- as.double(out$types_close)
  out$k <- as.integer(out$k)
  out$views <- isTRUE(as.logical(out$views))  # Cascade.views: bool(...)
  out
}

.ps_as_matrix <- function(p) { p <- reticulate::py_to_r(p); matrix(as.double(p), nrow = nrow(p)) }

.ps_mirror <- function(rows) .np()$ascontiguousarray(.np()$flip(rows, axis = 2L))  # x[:, :, ::-1]

#' Stage 1 with the version's confidence signals (model.cascade.Cascade.stage1_signals).
#'
#' With novelty on, one pass of cascade$features gives the probabilities and the penultimate
#' features, and the novelty is model.confidence.knn_distance to the bank (k = the rule's k);
#' else stage 1 alone. With flip TTA or views, the mirror image's probabilities (a second batch of
#' the same size); with views, the zoomed crop's too (model.confidence.zoom), and the views
#' disagree when the mirror's or the crop's top manufacturer differs from the image's (argmax of
#' the image's own, un-averaged probabilities; ties: the first). With flip TTA the probabilities
#' are then the mean of the image's and the mirror's, in double as Python.
#'
#' @param xb NumPy float32 (n, H, W, 3) batch (ps_as_batch).
#' @return list(p_m = n x M matrix, novelty = n doubles (the float32 distances) or NULL,
#'   novel = n logicals, novelty >= threshold as Python's forward_signals compares it (NumPy:
#'   float32 against the threshold), or NULL; views_disagree = n logicals or NULL).
ps_stage1_signals <- function(cascade, xb) {
  np <- .np()
  novelty <- novel <- disagree <- NULL
  if (isTRUE(cascade$novelty)) {
    mconf <- reticulate::import("model.confidence", convert = FALSE)
    out <- cascade$features$predict_on_batch(xb)
    p <- .ps_as_matrix(reticulate::py_get_item(out, 0L))
    d <- mconf$knn_distance(np$asarray(reticulate::py_get_item(out, 1L)), cascade$bank,
                            as.integer(cascade$confidence$k))
    novelty <- as.double(reticulate::py_to_r(d))
    # forward_signals: confident &= novelty < threshold, a float32 array against a Python float
    novel <- !as.logical(reticulate::py_to_r(np$less(d, cascade$confidence$novelty_threshold)))
  } else {
    p <- .ps_as_matrix(cascade$stage1$predict_on_batch(xb))
  }
  p_flip <- NULL
  if (identical(cascade$tta, "flip") || isTRUE(cascade$views)) {
    p_flip <- .ps_as_matrix(cascade$stage1$predict_on_batch(.ps_mirror(xb)))
  }
  if (isTRUE(cascade$views)) {
    zoomed <- reticulate::import("model.confidence", convert = FALSE)$zoom(xb)
    p_zoom <- .ps_as_matrix(cascade$stage1$predict_on_batch(zoomed))
    argmax <- function(q) apply(q, 1, which.max)  # np.argmax: the first maximum
    top <- argmax(p)
    disagree <- argmax(p_flip) != top | argmax(p_zoom) != top
  }
  if (identical(cascade$tta, "flip")) p <- (p + p_flip) / 2
  list(p_m = p, novelty = novelty, novel = novel, views_disagree = disagree)
}

#' Raw forward passes with routing and the signals that decide "unsure"
#' (model.cascade.Cascade.forward_signals).
#'
#' @param x float32-valued (n, H, W, 3) R array, or a NumPy float32 array.
#' @return list(p_m = n x M matrix of stage-1 probabilities (doubles holding float32
#'   values; the flip-TTA mean when cascade$tta is "flip"), p_t = named list of n x T_m
#'   matrices; rows not routed to a manufacturer are NaN; manufacturers without a stage-2
#'   model (Other) have no entry), novelty (n doubles or NULL), views_disagree (n logicals or
#'   NULL), unsure (n logicals: stage 1 under the threshold, an unusual photo, or views that
#'   disagree). An unsure image is routed to both leading manufacturers.
ps_forward_signals <- function(cascade, x) {
  xb <- ps_as_batch(x)
  s1 <- ps_stage1_signals(cascade, xb)
  p_m <- s1$p_m
  n <- nrow(p_m)
  mans <- cascade$labels$manufacturer
  ord <- t(apply(p_m, 1, function(r) order(-r, method = "radix")))
  if (n == 1L || length(mans) == 1L) ord <- matrix(ord, nrow = n)
  top <- ord[, 1]
  confident <- apply(p_m, 1, max) >= cascade$threshold
  if (!is.null(s1$novel)) confident <- confident & !s1$novel
  if (!is.null(s1$views_disagree)) confident <- confident & !s1$views_disagree
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
      out[rows, ] <- .ps_run_model(cascade, model, sub)
    }
    p_t[[m]] <- out
  }
  list(p_m = p_m, p_t = p_t, novelty = s1$novelty, views_disagree = s1$views_disagree, unsure = !confident)
}

#' Raw forward passes with routing (model.cascade.Cascade.probabilities): ps_forward_signals()'s
#' p_m and p_t.
ps_probabilities <- function(cascade, x) ps_forward_signals(cascade, x)[c("p_m", "p_t")]

#' Why an unsure answer is unsure: the port of model.cascade.Cascade.unsure_reasons.
#'
#' Codes of PS_UNSURE_REASONS, in that order: "low_confidence" when stage 1's top probability is
#' under cascade$threshold, reported as "types_close" instead when the rule's types_close is set,
#' there are at least two candidates and the second joint probability is at least types_close
#' times the first; "unusual_photo" when the version flags unusual photos and the novelty is at or
#' above the rule's threshold; "views_disagree" when the views disagree.
#'
#' @param cascade a loaded version (threshold, confidence, novelty are read).
#' @param p_top stage 1's top manufacturer probability.
#' @param pairs the joint probabilities of the candidate (manufacturer, leaf) pairs, best first
#'   (ps_predict's top_k list before it is cut to top_k).
#' @param novelty the image's novelty (k-NN distance), or NULL.
#' @param disagree TRUE/FALSE, or NULL (views off).
#' @return a character vector (character(0): no reason).
ps_unsure_reasons <- function(cascade, p_top, pairs, novelty = NULL, disagree = NULL) {
  rule <- cascade$confidence
  out <- character(0)
  if (p_top < cascade$threshold) {
    close <- !is.null(rule$types_close) && length(pairs) > 1L && pairs[2] >= rule$types_close * pairs[1]
    out <- c(out, if (close) "types_close" else "low_confidence")
  }
  if (!is.null(novelty) && isTRUE(cascade$novelty) && novelty >= rule$novelty_threshold) {
    out <- c(out, "unusual_photo")
  }
  if (isTRUE(disagree)) out <- c(out, "views_disagree")
  out[order(match(out, PS_UNSURE_REASONS))]
}

#' The family of each stage-2 leaf of manufacturer m (model.cascade.leaf_families): labels.json's
#' "families" map, else the ICAO family table (dataset.schema.family_of, through reticulate) for
#' versions trained before families existed; "<F> family" leaves give F.
ps_leaf_families <- function(cascade, m) {
  leaves <- cascade$labels$types[[m]]
  known <- cascade$info$labels$families[[m]]
  fam_of <- NULL
  vapply(leaves, function(t) {
    f <- known[[t]]
    if (!is.null(f) && nzchar(f)) return(f)
    if (endsWith(t, PS_FAMILY_LEAF_SUFFIX)) return(substr(t, 1L, nchar(t) - nchar(PS_FAMILY_LEAF_SUFFIX)))
    if (is.null(fam_of)) fam_of <<- reticulate::import("dataset.schema")$family_of
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

PS_OTHER_TEXT <- "another manufacturer (not Airbus or Boeing)"  # model.cascade.OTHER_TEXT
PS_NONE_TEXT <- "not an aircraft"                                 # model.cascade.NONE_TEXT

#' An answer in a spotter's words (model.cascade.answer_text): "Boeing B738", "Boeing B737
#' family", "Airbus", PS_OTHER_TEXT for manufacturer Other, PS_NONE_TEXT for level "none".
ps_answer_text <- function(level, label, manufacturer) {
  if (level == "none") return(PS_NONE_TEXT)
  if (identical(manufacturer, "Other")) return(PS_OTHER_TEXT)
  if (level == "manufacturer") return(if (is.null(manufacturer)) "" else manufacturer)
  paste(manufacturer, label)
}

#' Classify preprocessed images (model.cascade.Cascade.predict): one list per image with
#' manufacturer, family, type, answer (level, label, text), aircraft (probability, threshold),
#' box, unsure, unsure_reasons (ps_unsure_reasons; a JSON array, empty when sure and for level
#' "none"), branches and top_k, in the same key order as Python's dicts.
#'
#' @param x float32-valued (n, H, W, 3) R or NumPy array (whole images, or cut to their boxes).
#' @param boxes NULL, or a list of n integer vectors c(left, top, right, bottom) / NULL: the box
#'   each image was cut to, in the uploaded image's pixels (reported as box).
#' @param aircraft NULL, or n doubles: the localizer's aircraft probabilities (ps_locate); below
#'   cascade$aircraft_threshold the answer is level "none" (manufacturer, family, type NULL).
ps_predict <- function(cascade, x, top_k = 3L, boxes = NULL, aircraft = NULL) {
  pr <- ps_forward_signals(cascade, x)
  p_m <- pr$p_m
  p_t <- pr$p_t
  mans <- cascade$labels$manufacturer
  results <- vector("list", nrow(p_m))
  for (i in seq_len(nrow(p_m))) {
    ord <- order(-p_m[i, ], method = "radix")
    unsure <- pr$unsure[i]
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
    p_air <- if (is.null(aircraft)) NULL else as.double(aircraft[[i]])
    no_aircraft <- !is.null(p_air) && !is.null(cascade$aircraft_threshold) && p_air < cascade$aircraft_threshold
    level <- if (no_aircraft) "none" else if (!is.null(best$type)) "type"
             else if (!is.null(best$family)) "family" else "manufacturer"
    label <- switch(level, type = best$type, family = paste0(best$family, PS_FAMILY_LEAF_SUFFIX),
                    manufacturer = best$manufacturer, none = "none")
    sorted <- order(-pair_p, method = "radix")  # Python: pairs.sort(key=lambda t: -t[0])
    po <- sorted[seq_len(min(max(1L, top_k), length(pair_p)))]
    reasons <- if (no_aircraft || !unsure) character(0) else
      ps_unsure_reasons(cascade, p_m[i, ord[1]], pair_p[sorted], pr$novelty[i], pr$views_disagree[i])
    box <- if (is.null(boxes) || is.null(boxes[[i]])) NULL else I(as.integer(boxes[[i]]))
    head <- if (no_aircraft) {
      list(manufacturer = list(label = NULL, probability = NULL),
           family = list(label = NULL, probability = NULL, joint_probability = NULL),
           type = list(label = NULL, probability = NULL, joint_probability = NULL))
    } else {
      list(
        manufacturer = list(label = best$manufacturer, probability = best$manufacturer_probability),
        family = list(label = best$family, probability = best$family_probability,
                      joint_probability = if (is.null(best$family)) NULL
                                          else best$manufacturer_probability * best$family_probability),
        type = list(label = best$type, probability = best$type_probability,
                    joint_probability = if (is.null(best$type)) NULL else best$joint_probability))
    }
    results[[i]] <- c(head, list(
      answer = list(level = level, label = label, text = ps_answer_text(level, label, best$manufacturer)),
      aircraft = list(probability = p_air, threshold = cascade$aircraft_threshold),
      box = box,
      unsure = unsure && !no_aircraft,
      unsure_reasons = I(reasons),
      branches = branches,
      top_k = lapply(po, function(q) list(manufacturer = pair_m[q], family = pair_f[[q]], type = pair_t[[q]],
                                          probability = pair_p[q]))))
  }
  results
}

# ---------------------------------------------------------------- the localizer (whole image)

#' The localizer's input for one decoded image (Pipeline.prepare: model.localize.localizer_input through reticulate):
#' a NumPy float32 (S, S, 3) array in [0, 1]; `img` is a Python PIL image (ps_decode_shared).
ps_localizer_input <- function(cascade, img, dct_scale = 1L) {
  reticulate::import("model.localize", convert = FALSE)$localizer_input(img, cascade$localizer_size, NULL,
                                                                        as.integer(dct_scale))
}

#' One image decoded for both phases (Pipeline.prepare: model.localize.decode through reticulate):
#' list(img = Python PIL image, scale = its DCT decode scale, size = integer c(width, height) at
#' full size). Errors with a "ps_decode_error" condition as ps_decode_shared.
ps_decode_for_crop <- function(cascade, source) {
  d <- ps_decode_shared(source, cascade$py_spec)
  list(img = reticulate::py_get_item(d, 0L), scale = as.integer(reticulate::py_to_r(reticulate::py_get_item(d, 1L))),
       size = as.integer(unlist(reticulate::py_to_r(reticulate::py_get_item(d, 2L)))))
}

#' The localizer's forward pass over whole images and the crop boxes (Pipeline.locate, then the box of Pipeline.crop).
#'
#' @param x_loc NumPy float32 (n, S, S, 3) (ps_localizer_input, stacked).
#' @param sizes list of n c(width, height): each image's size, in the pixels its box is given in.
#' @return list(aircraft = n doubles in [0, 1] (float32 outputs), boxes = list of n integer
#'   c(left, top, right, bottom) or NULL: model.localize.box_from_cam through reticulate on the
#'   same float64 maps Python uses; all NULL when the version has no crop rule).
#' Errors when the version has no localizer.
ps_locate <- function(cascade, x_loc, sizes) {
  if (is.null(cascade$localizer)) stop("model version ", cascade$version, " has no localizer")
  np <- .np()
  out <- cascade$localizer$predict_on_batch(ps_as_batch(x_loc))
  aircraft <- as.double(reticulate::py_to_r(np$asarray(reticulate::py_get_item(out, "aircraft"),
                                                       dtype = "float64")$reshape(-1L)))
  cams <- np$asarray(reticulate::py_get_item(out, "cam"), dtype = "float64")
  loc <- reticulate::import("model.localize", convert = FALSE)
  boxes <- lapply(seq_along(sizes), function(i) {
    if (is.null(cascade$crop_rule)) return(NULL)
    b <- reticulate::py_to_r(loc$box_from_cam(cams$`__getitem__`(as.integer(i - 1L)), as.integer(sizes[[i]][1]),
                                              as.integer(sizes[[i]][2]), cascade$crop_rule))
    if (is.null(b)) NULL else as.integer(unlist(b))
  })
  list(aircraft = aircraft, boxes = boxes)
}

#' A decoded image cut to `box` (integer c(left, top, right, bottom), or NULL: whole) and
#' preprocessed as the classifier's input (Pipeline.crop: model.preprocessing.to_uint8
#' then scale, through reticulate): a NumPy float32 (H, W, 3) array.
ps_preprocess_image <- function(cascade, img, box = NULL, dct_scale = 1L) {
  pp <- reticulate::import("model.preprocessing", convert = FALSE)
  py_box <- if (is.null(box)) NULL else reticulate::tuple(as.list(as.integer(box)))
  pp$scale(pp$to_uint8(img, cascade$py_spec, py_box, dct_scale = as.integer(dct_scale)), cascade$py_spec)
}

#' Decode, locate, crop, read and classify encoded images or paths in one batch
#' (model.pipeline.Pipeline.predict): the localizer phase only for a version with one, the
#' registration reader only when asked and loaded (cascade$reader, ps_load_reader).
#'
#' @param sources list of raw vectors (encoded images) or file paths.
#' @param read read each image's registration (ps_read_registration, inside its box when there
#'   is one); ignored when cascade$reader is NULL.
#' @return ps_predict()'s list joined to the readings by ps_fuse (answer$source, registration),
#'   one element per image. Errors with a "ps_decode_error" condition (field code) on an image
#'   that does not decode.
ps_predict_images <- function(cascade, sources, top_k = 3L, read = FALSE) {
  decoded <- lapply(sources, function(src) ps_decode_for_crop(cascade, src))
  boxes <- NULL
  aircraft <- NULL
  if (!is.null(cascade$localizer)) {
    sizes <- lapply(decoded, function(d) d$size)
    loc <- ps_locate(cascade, .np()$stack(lapply(decoded, function(d) ps_localizer_input(cascade, d$img, d$scale))),
                     sizes)
    boxes <- loc$boxes
    aircraft <- loc$aircraft
  }
  x <- .np()$stack(lapply(seq_along(decoded), function(i)
    ps_preprocess_image(cascade, decoded[[i]]$img, boxes[[i]], decoded[[i]]$scale)))
  readings <- lapply(seq_along(sources), function(i) if (read) ps_read_registration(cascade, sources[[i]], boxes[[i]]))
  results <- ps_predict(cascade, x, top_k = top_k, boxes = boxes, aircraft = aircraft)
  lapply(seq_along(results), function(i) ps_fuse(results[[i]], readings[[i]]))
}

#' The inference pipeline's stages of a loaded version, in order (model.pipeline.Pipeline.stages):
#' "decode", "gate" (a localizer), "crop" (a localizer with a crop rule), "classify",
#' "tta:<kind>", "novelty" (unusual photos are unsure), "views" (the mirror image and the zoomed
#' crop must agree), "read" (a registration reader: cascade$reader, ps_load_reader).
ps_stages <- function(cascade) {
  out <- "decode"
  if (!is.null(cascade$localizer)) out <- c(out, "gate")
  if (!is.null(cascade$crop_rule)) out <- c(out, "crop")
  out <- c(out, "classify")
  if (!is.null(cascade$tta)) out <- c(out, paste0("tta:", cascade$tta))
  if (isTRUE(cascade$novelty)) out <- c(out, "novelty")
  if (isTRUE(cascade$views)) out <- c(out, "views")
  if (!is.null(cascade$reader)) out <- c(out, "read")
  out
}

# ---------------------------------------------------------------- the registration reader

#' The registration reader of the configured registry, as Pipeline.load(..., registry =
#' model.registry.load_configured()) holds it (through reticulate): model.reader.RegistrationReader
#' on the file named by PLANESPOTTER_REGISTRY (empty: none), else the shared default when present.
#' Store it as cascade$reader (NULL: registrations are not read).
#'
#' @return the Python RegistrationReader, or NULL when no registry is configured.
#' Errors (model.registry.RegistryError, naming the file) on a configured file that is not a registry.
ps_load_reader <- function() {
  registry <- reticulate::import("model.registry", convert = FALSE)$load_configured()
  if (inherits(registry, "python.builtin.NoneType")) return(NULL)
  reticulate::import("model.reader", convert = FALSE)$RegistrationReader(registry)
}

#' Read the registration painted on one upload (model.pipeline.Pipeline.read), through
#' reticulate: RegistrationReader.read_upload decodes the upload again for reading and reads
#' inside `box` or on the whole image.
#'
#' @param source a raw vector (encoded image) or a file path.
#' @param box integer c(left, top, right, bottom): the aircraft's box in the uploaded image's
#'   pixels (ps_locate), or NULL (the whole image).
#' @return ps_reading()'s list, or NULL: no registration the registry knows, or no reader.
ps_read_registration <- function(cascade, source, box = NULL) {
  if (is.null(cascade$reader)) return(NULL)
  py_box <- if (is.null(box)) NULL else reticulate::r_to_py(as.list(as.integer(box)))
  ps_reading(cascade$reader$read_upload(.py_source(source), py_box))
}

#' A model.reader.Reading (Python, convert = FALSE) as an R list: text (the registration as
#' the registry writes it), read (the OCR's characters), icao_type, description ("" when the
#' registry has none), family (model.registry.Entry.family: NULL for other makers), manufacturer
#' ("Airbus", "Boeing" or "Other": Entry.manufacturer), box (integer c(left, top, right, bottom)
#' of the text line, uploaded pixels), score, corrections. NULL for Python's None.
ps_reading <- function(reading) {
  if (inherits(reading, "python.builtin.NoneType")) return(NULL)
  get <- function(obj, name) reticulate::py_to_r(reticulate::py_get_attr(obj, name))
  e <- reticulate::py_get_attr(reading, "entry")
  list(text = get(reading, "text"), read = get(reading, "read"), icao_type = get(e, "icao_type"),
       description = get(e, "description"), family = get(e, "family"), manufacturer = get(e, "manufacturer"),
       box = as.integer(unlist(get(reading, "box"))), score = as.double(get(reading, "score")),
       corrections = as.integer(get(reading, "corrections")))
}

PS_REGISTRATION_SOURCE <- "registration"  # model.reader.SOURCE

#' Join a reading to one answer of ps_predict (model.reader.fuse).
#'
#' answer$answer gets source "image" (when it has none); registration is NULL without a
#' reading, else list(text, icao_type, description, box, agrees), agrees: the registry's
#' manufacturer is the answer's. When the registry's manufacturer agrees, or the answer is
#' unsure and the registry names one of its branches, the answer becomes the registry's type:
#' manufacturer (probability: that branch's, else NULL), family (ps_reading's family) and type
#' from the registry with NULL probabilities, answer list(level = "type", label, text,
#' source = "registration"), unsure FALSE, unsure_reasons empty (the registration settles what
#' the image left open), agrees TRUE. A level "none" answer never changes.
#' Keys keep Python's order (registration last).
#'
#' @param answer one element of ps_predict()'s list.
#' @param reading ps_reading()'s list, or NULL.
ps_fuse <- function(answer, reading) {
  if (is.null(answer$answer$source)) answer$answer$source <- "image"
  if (is.null(reading)) {
    answer["registration"] <- list(NULL)
    return(answer)
  }
  m <- reading$manufacturer
  mine <- answer$manufacturer$label
  branch <- NULL  # the last branch of manufacturer m, as Python's {manufacturer: branch} keeps
  for (b in answer$branches) if (identical(b$manufacturer, m)) branch <- b
  answer["registration"] <- list(list(text = reading$text, icao_type = reading$icao_type,
                                      description = reading$description, box = I(as.integer(reading$box)),
                                      agrees = !is.null(mine) && identical(m, mine)))
  if (answer$answer$level == "none") return(answer)
  if (!(identical(m, mine) || (isTRUE(answer$unsure) && !is.null(branch)))) return(answer)
  t <- reading$icao_type
  answer$manufacturer <- list(label = m, probability = branch$manufacturer_probability)
  answer$family <- list(label = reading$family, probability = NULL, joint_probability = NULL)
  answer$type <- list(label = t, probability = NULL, joint_probability = NULL)
  words <- if (m != "Other") paste(m, t) else if (nzchar(reading$description)) sprintf("%s (%s)", t, reading$description)
           else t
  answer$answer <- list(level = "type", label = t, text = words, source = PS_REGISTRATION_SOURCE)
  answer$unsure <- FALSE
  answer$unsure_reasons <- I(character(0))
  answer$registration$agrees <- TRUE
  answer
}
