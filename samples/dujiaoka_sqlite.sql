-- dujiaoka's core tables (reference: assimon/dujiaoka database/sql/install.sql), adapted to SQLite.
-- SQLite has no DECIMAL type: money columns are TEXT so amounts stay exactly as written ('10.00').
-- Timestamps are PRC wall-clock text, as dujiaoka writes them. order_sn is COLLATE NOCASE, like
-- MySQL's utf8_unicode_ci: 'abc' and 'ABC' are the same order.
CREATE TABLE IF NOT EXISTS goods (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  group_id INTEGER NOT NULL,
  gd_name TEXT NOT NULL,
  gd_description TEXT NOT NULL DEFAULT '',
  gd_keywords TEXT NOT NULL DEFAULT '',
  picture TEXT,
  retail_price TEXT DEFAULT '0.00',
  actual_price TEXT NOT NULL DEFAULT '0.00',
  in_stock INTEGER NOT NULL DEFAULT 0,
  sales_volume INTEGER DEFAULT 0,
  ord INTEGER DEFAULT 1,
  buy_limit_num INTEGER NOT NULL DEFAULT 0,
  buy_prompt TEXT,
  description TEXT,
  type INTEGER NOT NULL DEFAULT 1,
  wholesale_price_cnf TEXT,
  other_ipu_cnf TEXT,
  api_hook TEXT,
  is_open INTEGER NOT NULL DEFAULT 1,
  created_at TEXT, updated_at TEXT, deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS carmis (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  goods_id INTEGER NOT NULL,
  status INTEGER NOT NULL DEFAULT 1,
  is_loop INTEGER NOT NULL DEFAULT 0,
  carmi TEXT NOT NULL,
  created_at TEXT, updated_at TEXT, deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_carmis_goods_id ON carmis (goods_id);
CREATE TABLE IF NOT EXISTS pays (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pay_name TEXT NOT NULL,
  pay_check TEXT NOT NULL UNIQUE,
  pay_method INTEGER NOT NULL,
  pay_client INTEGER NOT NULL DEFAULT 1,
  merchant_id TEXT,
  merchant_key TEXT,
  merchant_pem TEXT NOT NULL DEFAULT '',
  pay_handleroute TEXT NOT NULL,
  is_open INTEGER NOT NULL DEFAULT 1,
  created_at TEXT, updated_at TEXT, deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  order_sn TEXT NOT NULL COLLATE NOCASE UNIQUE,
  goods_id INTEGER NOT NULL,
  coupon_id INTEGER DEFAULT 0,
  title TEXT NOT NULL,
  type INTEGER NOT NULL DEFAULT 1,
  goods_price TEXT NOT NULL DEFAULT '0.00',
  buy_amount INTEGER NOT NULL DEFAULT 1,
  coupon_discount_price TEXT NOT NULL DEFAULT '0.00',
  wholesale_discount_price TEXT NOT NULL DEFAULT '0.00',
  total_price TEXT NOT NULL DEFAULT '0.00',
  actual_price TEXT NOT NULL DEFAULT '0.00',
  search_pwd TEXT DEFAULT '',
  email TEXT NOT NULL,
  info TEXT,
  pay_id INTEGER,
  buy_ip TEXT NOT NULL DEFAULT '',
  trade_no TEXT DEFAULT '',
  status INTEGER NOT NULL DEFAULT 1,
  coupon_ret_back INTEGER NOT NULL DEFAULT 0,
  created_at TEXT, updated_at TEXT, deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_orders_email ON orders (email);
CREATE INDEX IF NOT EXISTS idx_orders_created_at ON orders (created_at);
