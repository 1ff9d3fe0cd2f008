# preprocess.R: image -> model input tensor in R, three ways, so differences are known.
#
#   "shared"  model.preprocessing.to_array through reticulate: the project's one
#             preprocessing (Pillow decode with the JPEG/PNG/WebP allow-list, EXIF transpose,
#             RGB conversion with alpha composited on white, Pillow resize with the spec's
#             filter, x * scale + offset in float32). What r/plumber.R serves with.
#   "keras"   the R original: R keras' image_load(path, target_size) + image_to_array + /255,
#             i.e. keras.utils.load_img (Pillow, no EXIF transpose, RGBA -> RGB by dropping
#             alpha) and img_to_array through reticulate, then x * scale + offset in R's
#             double precision (the original's `/ 255`).
#   "pure"    pure R: the jpeg / png packages decode, an R port of Pillow's resize
#             (NEAREST: ImagingScaleAffine; BILINEAR/BICUBIC/LANCZOS/BOX/HAMMING: the two-pass
#             ImagingResample convolution with 22-bit fixed-point coefficients, Pillow 13's
#             pass order), EXIF
#             orientation read from the JPEG's APP1 segment, alpha composited on white with
#             Pillow's integer formula, float32 rounding emulated with writeBin(size = 4).
#             WebP and 16-bit PNG are not supported (no R decoder in Debian).
#
# Shapes: one image -> double array (height, width, 3), values as float32 numbers (exact);
# ps_preprocess_batch -> (n, height, width, 3).
#
# The spec is a list(height, width, resize, scale, offset[, jpeg_draft]) as in preprocessing.json.
# jpeg_draft (scaled JPEG decoding, model/preprocessing.py) is honoured by "shared" only: "keras"
# and "pure" always decode at full size, so on a JPEG that the spec drafts (at least
# 2 x jpeg_draft x the input on each side) their tensors differ from "shared" (r/README.md).

suppressPackageStartupMessages({
  library(jpeg)
  library(png)
})

PS_PREPROCESS_METHODS <- c("shared", "keras", "pure")

#' Read a model version's preprocessing.json into a spec list.
ps_read_spec <- function(model_dir) {
  spec <- jsonlite::fromJSON(file.path(model_dir, "preprocessing.json"), simplifyVector = TRUE)
  spec$height <- as.integer(spec$height)
  spec$width <- as.integer(spec$width)
  spec
}

#' Round doubles to the nearest float32 (IEEE round-to-nearest-even, as a C cast does).
f32 <- function(x) {
  d <- dim(x)
  y <- readBin(writeBin(as.double(x), raw(), size = 4L), "double", size = 4L, n = length(x))
  dim(y) <- d
  y
}

# ---------------------------------------------------------------- decoding (pure R)
.is_jpeg <- function(b) length(b) >= 3L && all(b[1:3] == as.raw(c(0xff, 0xd8, 0xff)))
.is_png <- function(b) length(b) >= 8L && all(b[1:8] == as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)))

#' EXIF orientation (1..8) of a JPEG from its APP1 "Exif" segment; 1 when absent.
ps_jpeg_orientation <- function(b) {
  n <- length(b)
  i <- 3L
  u16 <- function(p, le) if (le) as.integer(b[p]) + 256L * as.integer(b[p + 1L]) else 256L * as.integer(b[p]) + as.integer(b[p + 1L])
  u32 <- function(p, le) if (le) u16(p, TRUE) + 65536 * u16(p + 2L, TRUE) else 65536 * u16(p, FALSE) + u16(p + 2L, FALSE)
  while (i + 3L <= n && b[i] == as.raw(0xff)) {
    marker <- as.integer(b[i + 1L])
    if (marker == 0xd9 || marker == 0xda) break
    len <- u16(i + 2L, FALSE)
    seg <- i + 4L
    if (marker == 0xe1 && len >= 16L && seg + 5L <= n &&
        identical(rawToChar(b[seg:(seg + 3L)]), "Exif")) {
      tiff <- seg + 6L
      le <- identical(rawToChar(b[tiff:(tiff + 1L)]), "II")
      ifd <- tiff + u32(tiff + 4L, le)
      if (ifd + 1L > n) return(1L)
      count <- u16(ifd, le)
      for (k in seq_len(count)) {
        e <- ifd + 2L + 12L * (k - 1L)
        if (e + 11L > n) break
        if (u16(e, le) == 0x0112L) {
          v <- u16(e + 8L, le)
          return(if (v >= 1L && v <= 8L) v else 1L)
        }
      }
      return(1L)
    }
    i <- i + 2L + len
  }
  1L
}

# Pillow's ImageOps.exif_transpose on an (h, w, c) array.
.exif_transpose <- function(a, orientation) {
  flip_lr <- function(a) a[, dim(a)[2]:1, , drop = FALSE]
  flip_tb <- function(a) a[dim(a)[1]:1, , , drop = FALSE]
  transpose <- function(a) aperm(a, c(2L, 1L, 3L))
  switch(as.character(orientation),
         "2" = flip_lr(a),
         "3" = flip_tb(flip_lr(a)),
         "4" = flip_tb(a),
         "5" = transpose(a),
         "6" = flip_lr(transpose(a)),        # ROTATE_270 (90 degrees clockwise)
         "7" = flip_tb(flip_lr(transpose(a))),
         "8" = flip_tb(transpose(a)),        # ROTATE_90 (counter-clockwise)
         a)
}

# Pillow's alpha_composite of an image over opaque white, per channel (AlphaComposite.c with
# destination alpha 255, PRECISION_BITS 7): coef1 = a * 128, coef2 = (255 - a) * 128,
# t = c * coef1 + 255 * coef2 + (128 << 7), out = SHIFTFORDIV255(t) >> 7 with
# SHIFTFORDIV255(t) = ((t >> 8) + t) >> 8. Integer arithmetic, exact in doubles.
.composite_white <- function(rgb, alpha) {
  t <- rgb * alpha * 128 + 255 * (255 - alpha) * 128 + 128 * 128
  floor(floor((floor(t / 256) + t) / 256) / 128)
}

#' Decode a JPEG or PNG (path or raw vector) to an RGB pixel array in pure R.
#'
#' @return double array (height, width, 3) of integer values 0..255.
#' Errors (condition class "ps_decode_error", field code): empty, unsupported_format,
#' unreadable.
ps_decode_pure <- function(source) {
  b <- if (is.raw(source)) source else readBin(source, "raw", file.info(source)$size)
  fail <- function(code, msg) stop(structure(class = c("ps_decode_error", "error", "condition"),
                                             list(message = msg, call = NULL, code = code)))
  if (length(b) == 0L) fail("empty", "the image is empty (0 bytes)")
  if (.is_jpeg(b)) {
    a <- tryCatch(jpeg::readJPEG(b), error = function(e) fail("unreadable", conditionMessage(e)))
    a <- round(a * 255)
    if (length(dim(a)) == 2L) a <- array(a, c(dim(a), 3L))
    if (dim(a)[3] != 3L) fail("unreadable", "pure R decodes only grayscale and RGB JPEGs")
    return(.exif_transpose(a, ps_jpeg_orientation(b)))
  }
  if (.is_png(b)) {
    if (length(b) >= 25L && as.integer(b[25]) == 16L) fail("unreadable", "pure R does not decode 16-bit PNGs")
    a <- tryCatch(png::readPNG(b), error = function(e) fail("unreadable", conditionMessage(e)))
    a <- round(a * 255)
    if (length(dim(a)) == 2L) a <- array(a, c(dim(a), 1L))
    ch <- dim(a)[3]
    if (ch == 1L) return(array(a, c(dim(a)[1:2], 3L)))
    if (ch == 2L) {
      g <- .composite_white(a[, , 1], a[, , 2])
      return(array(g, c(dim(a)[1:2], 3L)))
    }
    if (ch == 3L) return(a)
    out <- array(0, c(dim(a)[1:2], 3L))
    for (k in 1:3) out[, , k] <- .composite_white(a[, , k], a[, , 4])
    return(out)
  }
  fail("unsupported_format", "pure R decodes only JPEG and PNG")
}

# ---------------------------------------------------------------- Pillow's resize in R
.FILTERS <- list(
  box = list(support = 0.5, fn = function(x) ifelse(x > -0.5 & x <= 0.5, 1.0, 0.0)),
  bilinear = list(support = 1.0, fn = function(x) { x <- abs(x); ifelse(x < 1.0, 1.0 - x, 0.0) }),
  hamming = list(support = 1.0, fn = function(x) {
    x <- abs(x)
    px <- x * pi
    ifelse(x == 0, 1.0, ifelse(x >= 1.0, 0.0, sin(px) / px * (f32(0.54) + f32(0.46) * cos(px))))
  }),
  bicubic = list(support = 2.0, fn = function(x) {
    a <- -0.5
    x <- abs(x)
    ifelse(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
           ifelse(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))
  }),
  lanczos = list(support = 3.0, fn = function(x) {
    sinc <- function(x) { px <- x * pi; ifelse(x == 0, 1.0, sin(px) / px) }
    ifelse(-3.0 <= x & x < 3.0, sinc(x) * sinc(x / 3), 0.0)
  })
)

#' Pillow's fixed-point resampling coefficients (Resample.c precompute_coeffs and
#' normalize_coeffs_8bpc, PRECISION_BITS = 22).
#' @return list(xmin = 0-based first input index per output pixel, k = list of integer
#'   coefficient vectors).
ps_pillow_coeffs <- function(in_size, out_size, filter) {
  f <- .FILTERS[[filter]]
  if (is.null(f)) stop("no Pillow filter named ", filter)
  scale <- in_size / out_size
  filterscale <- max(scale, 1.0)
  support <- f$support * filterscale
  ss <- 1.0 / filterscale
  xmins <- integer(out_size)
  ks <- vector("list", out_size)
  for (xx in 0:(out_size - 1L)) {
    center <- (xx + 0.5) * scale
    xmin <- max(trunc(center - support + 0.5), 0)
    xmax <- min(trunc(center + support + 0.5), in_size) - xmin
    w <- f$fn(((0:(xmax - 1)) + xmin - center + 0.5) * ss)
    ww <- Reduce(`+`, w, accumulate = FALSE)  # sequential double sum, as the C loop
    if (ww != 0.0) w <- w / ww
    k <- ifelse(w < 0, trunc(-0.5 + w * 2^22), trunc(0.5 + w * 2^22))
    xmins[xx + 1L] <- as.integer(xmin)
    ks[[xx + 1L]] <- k
  }
  list(xmin = xmins, k = ks)
}

# One pass along the columns of a matrix m (rows stay): out[, j] = clip8(sum k * m[, idx]).
.resample_cols <- function(m, co) {
  out <- matrix(0, nrow(m), length(co$k))
  for (j in seq_along(co$k)) {
    idx <- co$xmin[j] + seq_along(co$k[[j]])
    s <- m[, idx, drop = FALSE] %*% co$k[[j]] + 2^21
    out[, j] <- pmin(pmax(floor(s / 2^22), 0), 255)
  }
  out
}

#' Pillow's NEAREST source indices (1-based) for one axis: ImagingScaleAffine accumulates
#' xo = scale/2, xo += scale in double and truncates.
ps_pillow_nearest_index <- function(in_size, out_size) {
  a <- in_size / out_size
  xo <- a * 0.5
  idx <- integer(out_size)
  for (x in seq_len(out_size)) {
    idx[x] <- if (xo < 0) 0L else as.integer(trunc(xo))
    xo <- xo + a
  }
  pmin(idx, in_size - 1L) + 1L
}

#' Resize an (h, w, 3) pixel array to (height, width) exactly as Pillow's Image.resize does.
ps_resize_pillow <- function(a, height, width, filter) {
  h <- dim(a)[1]
  w <- dim(a)[2]
  if (h == height && w == width) return(a)
  if (filter == "nearest") {
    return(a[ps_pillow_nearest_index(h, height), ps_pillow_nearest_index(w, width), , drop = FALSE])
  }
  out <- array(0, c(height, width, dim(a)[3]))
  cx <- if (w != width) ps_pillow_coeffs(w, width, filter) else NULL
  cy <- if (h != height) ps_pillow_coeffs(h, height, filter) else NULL
  # Pillow >= 12 (Resample.c ImagingResampleInner): the vertical pass runs first when the
  # height shrinks by more than twice as many pixels as the width; the intermediate image is
  # clipped to 8 bits, so the order changes results by up to 1.
  horizontal_first <- !((h - height) > 0 && (h - height) > (w - width) * 2)
  for (ch in seq_len(dim(a)[3])) {
    m <- a[, , ch]
    if (!is.matrix(m)) m <- matrix(m, h, w)
    if (horizontal_first) {
      if (!is.null(cx)) m <- .resample_cols(m, cx)
      if (!is.null(cy)) m <- t(.resample_cols(t(m), cy))
    } else {
      if (!is.null(cy)) m <- t(.resample_cols(t(m), cy))
      if (!is.null(cx)) m <- .resample_cols(m, cx)
    }
    out[, , ch] <- m
  }
  out
}

#' A textbook resize, for comparison only: nearest = floor((i + 0.5) * in / out),
#' bilinear = 2x2 interpolation at the pixel centres (align_corners = FALSE), rounded.
ps_resize_textbook <- function(a, height, width, filter) {
  h <- dim(a)[1]
  w <- dim(a)[2]
  if (filter == "nearest") {
    iy <- pmin(floor(((1:height) - 0.5) * h / height), h - 1) + 1
    ix <- pmin(floor(((1:width) - 0.5) * w / width), w - 1) + 1
    return(a[iy, ix, , drop = FALSE])
  }
  pos <- function(n_out, n_in) pmin(pmax(((1:n_out) - 0.5) * n_in / n_out - 0.5, 0), n_in - 1)
  y <- pos(height, h); x <- pos(width, w)
  y0 <- floor(y); x0 <- floor(x); y1 <- pmin(y0 + 1, h - 1); x1 <- pmin(x0 + 1, w - 1)
  fy <- y - y0; fx <- x - x0
  out <- array(0, c(height, width, dim(a)[3]))
  for (ch in seq_len(dim(a)[3])) {
    m <- a[, , ch]
    top <- m[y0 + 1, x0 + 1, drop = FALSE] * outer(1 - fy, 1 - fx) + m[y0 + 1, x1 + 1, drop = FALSE] * outer(1 - fy, fx)
    bot <- m[y1 + 1, x0 + 1, drop = FALSE] * outer(fy, 1 - fx) + m[y1 + 1, x1 + 1, drop = FALSE] * outer(fy, fx)
    out[, , ch] <- round(top + bot)
  }
  out
}

#' Scale uint8 pixel values like model.preprocessing.scale: float32(p) * float32(scale) +
#' float32(offset), each step rounded to float32 (exact emulation: the double product of two
#' float32 numbers is exact, so one rounding gives IEEE float32 multiplication).
ps_scale_f32 <- function(pixels, spec) {
  f32(f32(pixels * f32(spec$scale)) + f32(spec$offset))
}

# ---------------------------------------------------------------- through reticulate
.ps_py <- new.env()

.py_modules <- function() {
  if (is.null(.ps_py$pp)) {
    .ps_py$pp <- reticulate::import("model.preprocessing", convert = FALSE)
    .ps_py$np <- reticulate::import("numpy", convert = FALSE)
    .ps_py$io <- reticulate::import("io", convert = FALSE)
    .ps_py$kutils <- NULL
  }
  .ps_py
}

#' The Python PreprocessingSpec object for an R spec list (jpeg_draft: 0 when absent, as for
#' versions saved before the field existed).
ps_py_spec <- function(spec) {
  m <- .py_modules()
  m$pp$PreprocessingSpec(height = as.integer(spec$height), width = as.integer(spec$width),
                         resize = spec$resize, channel_order = "RGB",
                         scale = as.double(spec$scale), offset = as.double(spec$offset),
                         jpeg_draft = as.integer(if (is.null(spec$jpeg_draft)) 0L else spec$jpeg_draft))
}

# A raw vector becomes Python bytes; a path stays a path.
.py_source <- function(source) {
  if (is.raw(source)) reticulate::import_builtins(convert = FALSE)$bytes(source) else source
}

#' The shared preprocessing through reticulate, kept as a NumPy float32 array (H, W, 3)
#' (convert = FALSE) so that a server does not pay R conversions. Python's ImageDecodeError
#' becomes an R condition of class "ps_decode_error" with its code.
ps_preprocess_shared_np <- function(source, spec, py_spec = NULL) {
  m <- .py_modules()
  if (is.null(py_spec)) py_spec <- ps_py_spec(spec)
  tryCatch(m$pp$to_array(.py_source(source), py_spec), error = function(e) {
    err <- reticulate::py_last_error()
    ex <- attr(err, "exception")
    if (!is.null(err) && identical(err$type, "ImageDecodeError") && !is.null(ex)) {
      code <- reticulate::py_get_attr(ex, "code")
      if (inherits(code, "python.builtin.object")) code <- reticulate::py_to_r(code)
      stop(structure(class = c("ps_decode_error", "error", "condition"),
                     list(message = err$value, call = NULL, code = code)))
    }
    stop(e)
  })
}

#' Decode an encoded image (raw vector) or a path with the shared decoder for the localizer path
#' of r/cascade.R: with `spec` (a Python PreprocessingSpec) model.localize.decode through
#' reticulate (RGB, EXIF orientation applied, a large JPEG read at the spec's DCT scale), which
#' returns the Python tuple (PIL image, dct_scale, (full width, full height)); without `spec`
#' model.preprocessing.decode_image at full size, the PIL image (convert = FALSE). Python's
#' ImageDecodeError becomes an R condition of class "ps_decode_error" with its code, as in
#' ps_preprocess_shared_np.
ps_decode_shared <- function(source, spec = NULL) {
  m <- .py_modules()
  tryCatch(if (is.null(spec)) m$pp$decode_image(.py_source(source))
           else reticulate::import("model.localize", convert = FALSE)$decode(.py_source(source), spec),
           error = function(e) {
    err <- reticulate::py_last_error()
    ex <- attr(err, "exception")
    if (!is.null(err) && identical(err$type, "ImageDecodeError") && !is.null(ex)) {
      code <- reticulate::py_get_attr(ex, "code")
      if (inherits(code, "python.builtin.object")) code <- reticulate::py_to_r(code)
      stop(structure(class = c("ps_decode_error", "error", "condition"),
                     list(message = err$value, call = NULL, code = code)))
    }
    stop(e)
  })
}

#' The R original's preprocessing through reticulate: keras.utils.load_img(target_size,
#' interpolation = spec$resize) + img_to_array, then * scale + offset in double.
ps_preprocess_keras <- function(source, spec) {
  m <- .py_modules()
  if (is.null(m$kutils)) m$kutils <- reticulate::import("keras", convert = FALSE)$utils
  src <- if (is.raw(source)) m$io$BytesIO(.py_source(source)) else source
  img <- m$kutils$load_img(src, color_mode = "rgb",
                           target_size = reticulate::tuple(as.integer(spec$height), as.integer(spec$width)),
                           interpolation = spec$resize)
  arr <- reticulate::py_to_r(m$kutils$img_to_array(img))
  arr * spec$scale + spec$offset
}

#' One image to a (height, width, 3) double array by the given method (see the file header).
#' @param resize_impl for "pure": "pillow" (exact port) or "textbook" (for comparison).
ps_preprocess <- function(source, spec, method = "shared", resize_impl = "pillow") {
  method <- match.arg(method, PS_PREPROCESS_METHODS)
  if (method == "shared") return(reticulate::py_to_r(ps_preprocess_shared_np(source, spec)))
  if (method == "keras") return(ps_preprocess_keras(source, spec))
  a <- ps_decode_pure(source)
  a <- if (resize_impl == "textbook") {
    ps_resize_textbook(a, spec$height, spec$width, spec$resize)
  } else {
    ps_resize_pillow(a, spec$height, spec$width, spec$resize)
  }
  ps_scale_f32(a, spec)
}

#' Uint8 pixels (height, width, 3) after decode + resize by the given method, before scaling.
ps_pixels <- function(source, spec, method = "shared", resize_impl = "pillow") {
  method <- match.arg(method, PS_PREPROCESS_METHODS)
  if (method == "shared") {
    m <- .py_modules()
    return(reticulate::py_to_r(m$np$asarray(m$pp$to_uint8(.py_source(source), ps_py_spec(spec)))))
  }
  if (method == "keras") {
    m <- .py_modules()
    if (is.null(m$kutils)) m$kutils <- reticulate::import("keras", convert = FALSE)$utils
    src <- if (is.raw(source)) m$io$BytesIO(.py_source(source)) else source
    img <- m$kutils$load_img(src, color_mode = "rgb",
                             target_size = reticulate::tuple(as.integer(spec$height), as.integer(spec$width)),
                             interpolation = spec$resize)
    return(reticulate::py_to_r(m$kutils$img_to_array(img)))
  }
  a <- ps_decode_pure(source)
  if (resize_impl == "textbook") ps_resize_textbook(a, spec$height, spec$width, spec$resize)
  else ps_resize_pillow(a, spec$height, spec$width, spec$resize)
}

#' Stack images into an (n, height, width, 3) double array.
ps_preprocess_batch <- function(sources, spec, method = "shared", resize_impl = "pillow") {
  out <- array(0, c(length(sources), spec$height, spec$width, 3L))
  for (i in seq_along(sources)) out[i, , , ] <- ps_preprocess(sources[[i]], spec, method, resize_impl)
  out
}
