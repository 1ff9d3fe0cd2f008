# Loads r/client.R and reads where the server under test is:
#   PLANESPOTTER_URL          base URL of a running server (ours or the R reference server)
#   PLANESPOTTER_TEST_IMAGES  a folder of real JPEG photos (../shared/data/smoke-airliners)
# tests/r/test_client.py starts our gunicorn server and runs this suite through rpy2.
source(file.path("..", "..", "client.R"))

server_url <- function() {
  url <- Sys.getenv("PLANESPOTTER_URL", "")
  if (!nzchar(url)) testthat::skip("PLANESPOTTER_URL is not set (no server to test against)")
  url
}

test_images <- function() {
  dir <- Sys.getenv("PLANESPOTTER_TEST_IMAGES", "")
  if (!nzchar(dir) || !dir.exists(dir)) testthat::skip("PLANESPOTTER_TEST_IMAGES is not a folder")
  dir
}
