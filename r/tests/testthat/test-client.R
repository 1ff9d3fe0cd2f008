# The R client against a real server (see helper-client.R for the environment it needs).

test_that("metadata is a one-row data frame describing the served model", {
  md <- ps_metadata(server_url())
  expect_s3_class(md, "data.frame")
  expect_equal(nrow(md), 1L)
  expect_true(nzchar(md$model_version))
  expect_true(md$height >= 8L && md$width >= 8L)
  expect_true(md$resize %in% c("nearest", "bilinear", "bicubic", "lanczos", "box"))
  expect_match(md$reference_sha256, "^[0-9a-f]{64}$")
  expect_true(md$threshold >= 0 && md$threshold <= 1)
  labels <- ps_labels(server_url())
  expect_setequal(names(labels), c("manufacturer", "family", "icao_type"))
  expect_equal(paste(unique(labels$manufacturer), collapse = ","), md$manufacturers)
  expect_equal(sum(!is.na(labels$family)), md$n_types)
  expect_true(all(is.na(labels$icao_type) | nchar(labels$icao_type) == 4L))  # ICAO designators or NA
})

# The answer of one classified file (a one-row data frame), at whatever level the server reached.
check_one_answer <- function(df, labels) {
  expect_true(df$answer_level %in% c("type", "family", "manufacturer", "none"))
  if (df$answer_level == "none") {  # the server's localizer finds no aircraft
    expect_true(is.na(df$manufacturer) && is.na(df$family) && is.na(df$icao_type))
    expect_equal(c(df$answer, df$answer_text), c("none", "not an aircraft"))
    return(invisible())
  }
  expect_true(df$manufacturer %in% labels$manufacturer)
  if (df$answer_level == "manufacturer") {  # Other (another manufacturer), or no stage-2 model
    expect_true(is.na(df$family) && is.na(df$icao_type))
    expect_equal(df$answer, df$manufacturer)
    return(invisible())
  }
  expect_true(df$family %in% labels$family[labels$manufacturer == df$manufacturer])
  expect_true(all(c(df$p_manufacturer, df$p_family) >= 0 & c(df$p_manufacturer, df$p_family) <= 1))
  expect_equal(df$answer_text, paste(df$manufacturer, df$answer))
  if (is.na(df$icao_type)) {  # not sure enough of a type: the answer stops at the family
    expect_equal(df$answer, paste(df$family, "family"))
    expect_true(is.na(df$p_type) && is.na(df$p_joint))
  } else {
    expect_true(df$icao_type %in% labels$icao_type[labels$manufacturer == df$manufacturer])
    expect_equal(df$answer, df$icao_type)
    expect_true(df$p_type >= 0 && df$p_type <= 1 && df$p_type <= df$p_family + 1e-12)
    expect_equal(df$p_joint, df$p_manufacturer * df$p_type, tolerance = 1e-12)
  }
}

test_that("classifying one file gives one row with probabilities and known labels", {
  photo <- sort(list.files(test_images(), pattern = PS_IMAGE_PATTERN, full.names = TRUE))[1]
  df <- ps_classify_file(server_url(), photo)
  labels <- ps_labels(server_url())
  expect_equal(nrow(df), 1L)
  expect_equal(df$file, basename(photo))
  check_one_answer(df, labels)
  expect_equal(df$model_version, ps_metadata(server_url())$model_version)
})

test_that("a folder is classified in batches, one row per image in sorted order", {
  dir <- test_images()
  photos <- sort(list.files(dir, pattern = PS_IMAGE_PATTERN, ignore.case = TRUE, full.names = TRUE))
  df <- ps_classify_folder(server_url(), dir, batch_size = 5L)
  expect_equal(nrow(df), length(photos))
  expect_equal(df$path, photos)
  expect_equal(df$file, basename(photos))
  one <- ps_classify_file(server_url(), photos[2])
  expect_equal(df$manufacturer[2], one$manufacturer)
  # batch composition changes float results by ~1e-7 (oneDNN), never more than this
  expect_equal(df$p_manufacturer[2], one$p_manufacturer, tolerance = 1e-5)
})

test_that("every answer carries its level, words, aircraft gate and box", {
  dir <- test_images()
  df <- ps_classify_folder(server_url(), dir, batch_size = 4L)
  expect_true(all(df$answer_level %in% c("type", "family", "manufacturer", "none")))
  expect_true(all(nzchar(df$answer_text)))
  none <- df$answer_level == "none"
  expect_true(all(df$answer[none] == "none" & df$answer_text[none] == "not an aircraft" & is.na(df$manufacturer[none])))
  other <- !is.na(df$manufacturer) & df$manufacturer == "Other"
  expect_true(all(df$answer_level[other] == "manufacturer" & is.na(df$family[other])))
  expect_true(all(df$answer_text[other] == "another manufacturer (not Airbus or Boeing)"))
  expect_true(all(is.na(df$p_aircraft) | (df$p_aircraft >= 0 & df$p_aircraft <= 1)))
  for (i in which(!is.na(df$box))) {
    b <- as.integer(strsplit(df$box[i], " ", fixed = TRUE)[[1]])
    expect_equal(length(b), 4L)
    expect_true(b[1] >= 0L && b[1] < b[3] && b[2] >= 0L && b[2] < b[4])
  }
})

test_that("an empty folder gives a zero-row data frame with the same columns", {
  empty <- tempfile("empty")
  dir.create(empty)
  on.exit(unlink(empty, recursive = TRUE))
  df <- ps_classify_folder(server_url(), empty)
  expect_equal(nrow(df), 0L)
  expect_true(all(c("file", "manufacturer", "p_manufacturer", "answer_level", "answer_text", "p_aircraft", "box",
                    "answer_source", "registration", "registration_icao_type", "registration_agrees",
                    "unsure_reasons", "path") %in% names(df)))
  expect_equal(names(ps_classify_folder(server_url(), empty, registration = TRUE)), names(df))
})

test_that("every answer says why it is unsure: comma-joined reason codes, \"\" when sure", {
  df <- ps_classify_folder(server_url(), test_images(), batch_size = 4L)
  expect_type(df$unsure_reasons, "character")
  expect_false(anyNA(df$unsure_reasons))
  codes <- c("low_confidence", "unusual_photo", "views_disagree", "types_close")
  for (i in seq_len(nrow(df))) {
    r <- if (nzchar(df$unsure_reasons[i])) strsplit(df$unsure_reasons[i], ",", fixed = TRUE)[[1]] else character(0)
    expect_true(all(r %in% codes))
    expect_equal(r, codes[codes %in% r])  # each once, in the reported order
    expect_equal(length(r) > 0L, df$unsure[i])    # a reason exactly when unsure ("none" answers are sure)
  }
})

test_that("server errors arrive as ps_http_error with the server's code", {
  bad <- tempfile(fileext = ".jpg")
  writeLines("hello, I am not an image", bad)
  on.exit(unlink(bad))
  err <- tryCatch(ps_classify_file(server_url(), bad), ps_http_error = function(e) e)
  expect_s3_class(err, "ps_http_error")
  expect_equal(err$status, 400L)
  expect_equal(err$code, "unsupported_format_image")
  expect_error(ps_classify_file(server_url(), file.path(tempdir(), "no-such-file.jpg")), "no such file")
  err <- tryCatch(ps_classify_files(server_url(), rep(bad, 1), top_k = 0L), ps_http_error = function(e) e)
  expect_equal(err$code, "bad_parameter")
})

test_that("registration = TRUE adds the reading; without it every registration is NA", {
  photos <- sort(list.files(test_images(), pattern = PS_IMAGE_PATTERN, ignore.case = TRUE, full.names = TRUE))
  photos <- head(photos, 3L)
  plain <- ps_classify_files(server_url(), photos)
  expect_true(all(c("answer_source", "registration", "registration_icao_type", "registration_agrees") %in% names(plain)))
  expect_true(all(plain$answer_source == "image"))
  expect_true(all(is.na(plain$registration) & is.na(plain$registration_icao_type) & is.na(plain$registration_agrees)))
  df <- ps_classify_files(server_url(), photos, registration = TRUE)
  expect_equal(nrow(df), length(photos))
  expect_true(all(df$answer_source %in% c("image", "registration")))
  found <- !is.na(df$registration)
  expect_true(all(is.na(df$registration_icao_type) == !found & is.na(df$registration_agrees) == !found))
  expect_true(all(grepl("^[A-Z0-9]{2,4}$", df$registration_icao_type[found])))
  expect_true(all(nzchar(df$registration[found])))
  read <- df$answer_source == "registration"  # the type is the registry's: it agrees by definition
  expect_true(all(found[read] & df$registration_agrees[read] & df$answer_level[read] == "type"))
  expect_equal(df$answer[read], df$registration_icao_type[read])
  expect_true(all(is.na(df$p_type[read]) & is.na(df$p_family[read])))
  same <- !read  # an answer the reading did not change is the image's, as without registration
  expect_equal(df$answer[same], plain$answer[same])
  one <- ps_classify_file(server_url(), photos[1], registration = TRUE)
  expect_equal(one$registration, df$registration[1])
})
