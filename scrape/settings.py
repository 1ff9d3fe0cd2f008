"""Scrapy settings of the planespotter crawler (``SCRAPY_SETTINGS_MODULE=scrape.settings``).

Every politeness behaviour is a setting with a safe default; tests lower the delays
through ``-s NAME=VALUE`` (``python -m scrape crawl --set NAME=VALUE``), never the
defaults here. Names are Scrapy's own where Scrapy has one; the few added here are
marked "(planespotter)".
"""

BOT_NAME = "planespotter"
SPIDER_MODULES = ["scrape.spiders"]
NEWSPIDER_MODULE = "scrape.spiders"

# --- Site ---------------------------------------------------------------------------
#: (planespotter) Site root; listing paths are resolved against it. Tests point it at
#: the loopback site.
BASE_URL = "https://www.planespotters.net/"
#: (planespotter) Listing paths crawled by the ``listing`` spider when none are given.
LISTINGS = ["/photos/latest"]
#: (planespotter) Hosts (and their subdomains) images may come from, besides BASE_URL's.
IMAGE_DOMAINS = ["planespotters.net", "plnspttrs.net"]
#: (planespotter) Listing pages to fetch per listing (1 = first page only; 0 = until the
#: no-results page).
MAX_LISTING_PAGES = 1
#: (planespotter) Fetch each photo's detail page for a larger image than the card's.
FOLLOW_PHOTO_PAGES = False

# --- Identity -----------------------------------------------------------------------
#: (planespotter) Contact (e-mail or URL) put in the User-Agent. Required: the spider
#: refuses to start without it (the site's API answers 403 to anonymous clients).
CONTACT = ""
#: (planespotter) Product token of the User-Agent: ``planespotter/0.1 (+mailto:…)``.
USER_AGENT_PRODUCT = "planespotter/0.1"

# --- Politeness ---------------------------------------------------------------------
ROBOTSTXT_OBEY = True
ROBOTSTXT_PARSER = "scrapy.robotstxt.ProtegoRobotParser"
#: (planespotter) Honour robots.txt ``Crawl-delay``: per host, the effective delay is
#: max(DOWNLOAD_DELAY, Crawl-delay), also under AutoThrottle (needs ROBOTSTXT_OBEY).
ROBOTSTXT_CRAWL_DELAY = True
DOWNLOAD_DELAY = 2.0  # seconds between requests to one host, at least
DOWNLOAD_DELAY_JITTER = 0.0  # no random shortening of the delay
CONCURRENT_REQUESTS = 4
CONCURRENT_REQUESTS_PER_DOMAIN = 1
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 5.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
#: (planespotter) Backoff before retry n (n = 1, 2, ...): min(RETRY_BACKOFF_MAX,
#: RETRY_BACKOFF_BASE * 2**(n-1)) seconds, unless the response has ``Retry-After``,
#: which is honoured as given. The whole host waits (not only the failed request).
RETRY_BACKOFF_BASE = 2.0
RETRY_BACKOFF_MAX = 120.0
#: (planespotter) A ``Retry-After`` longer than this (seconds) gives up the request.
RETRY_AFTER_MAX = 600.0
#: (planespotter) At most this many new photos per run (0 = no limit); `--items N`. The
#: spider closes with reason "item_limit" when it is reached.
MAX_ITEMS = 0
DOWNLOAD_TIMEOUT = 60
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024

# --- HTTP cache (development re-runs) -------------------------------------------------
HTTPCACHE_ENABLED = False
HTTPCACHE_DIR = "httpcache"
HTTPCACHE_EXPIRATION_SECS = 0
HTTPCACHE_IGNORE_HTTP_CODES = [403, 408, 429, 500, 502, 503, 504, 522, 524]

# --- Output --------------------------------------------------------------------------
#: (planespotter) Dataset folder: metadata.csv, images/<sha1 of URL>.jpg, crawl_report.json.
DATASET_DIR = "data/raw/planespotters"
#: (planespotter) Rows per atomic rewrite of metadata.csv.
CSV_BATCH_SIZE = 25
#: (planespotter) pHash Hamming distance (bits of 64) at or below which a photo is
#: flagged as a near-duplicate of an earlier one.
NEAR_DUPLICATE_MAX_DISTANCE = 6
IMAGES_MIN_WIDTH = 200
IMAGES_MIN_HEIGHT = 100
IMAGES_EXPIRES = 36500  # days: a stored image URL is never downloaded again

ITEM_PIPELINES = {
    "scrape.pipelines.KnownPhotoFilterPipeline": 100,
    "scrape.pipelines.PhotoImagesPipeline": 200,
    "scrape.pipelines.DatasetWriterPipeline": 300,
}
DOWNLOADER_MIDDLEWARES = {
    "scrape.middlewares.CrawlDelayMiddleware": 110,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "scrape.middlewares.BackoffRetryMiddleware": 550,
}
EXTENSIONS = {
    "scrapy.extensions.throttle.AutoThrottle": None,
    "scrape.middlewares.CrawlDelayAutoThrottle": 0,
    "scrapy.extensions.telnet.TelnetConsole": None,
}
REMOTE_CONTROL_ENABLED = False  # Scrapy >= 2.19 would open a local control port
TELNETCONSOLE_ENABLED = False

LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"
