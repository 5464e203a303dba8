-- A small shop's own database on MySQL or MariaDB: the sample source of
-- examples/mysql/sources.toml, the same shop as examples/postgres. Customers belong to a tenant
-- (the Datarequest account), have contacts (the subprofiles), get messages (with their MIME
-- bodies) and cause events of several kinds. The columns use every type the mapping converts:
-- TINYINT to BIGINT (signed and unsigned), DECIMAL, FLOAT, DOUBLE, VARCHAR, TEXT, ENUM, SET,
-- BIT, JSON, BLOB, VARBINARY, DATE, TIME, YEAR, DATETIME and TIMESTAMP.
--
--   mysql -e 'CREATE DATABASE shop' && mysql shop < examples/mysql/schema.sql

SET time_zone = '+00:00';

CREATE TABLE customer (
    tenant      INT             NOT NULL,
    id          BIGINT          NOT NULL,
    name        VARCHAR(100)    NOT NULL,
    email       VARCHAR(254)    NOT NULL,
    phone       VARCHAR(32),
    balance     DECIMAL(14,2)   NOT NULL DEFAULT 0,
    rating      FLOAT,
    score       DOUBLE,
    vip         BOOLEAN         NOT NULL DEFAULT FALSE,
    plan        ENUM('free', 'plus', 'pro') NOT NULL DEFAULT 'free',
    tags        SET('gold', 'early bird', 'new') NOT NULL DEFAULT '',
    flags       BIT(3),
    preferences JSON,
    avatar      BLOB,
    birthday    DATE,
    member_since YEAR,
    quiet_from  TIME,
    created_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME,
    PRIMARY KEY (tenant, id)
);

-- A customer's other addresses: a subprofile each. The id is unsigned, as some shops keep them.
CREATE TABLE contact (
    tenant      INT             NOT NULL,
    id          BIGINT UNSIGNED NOT NULL,
    customer_id BIGINT          NOT NULL,
    label       VARCHAR(40)     NOT NULL,
    email       VARCHAR(254),
    created_at  TIMESTAMP       NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE messages (
    id          VARCHAR(64)     PRIMARY KEY,
    tenant      INT             NOT NULL,
    customer_id BIGINT,
    contact_id  BIGINT UNSIGNED,
    address     VARCHAR(254)    NOT NULL,
    mailing     VARCHAR(40)     NOT NULL,
    subject     TEXT            NOT NULL,
    sent_at     TIMESTAMP       NOT NULL DEFAULT CURRENT_TIMESTAMP,
    body        LONGTEXT        NOT NULL,
    KEY (tenant, customer_id, sent_at),
    KEY (tenant, contact_id, sent_at),
    KEY (tenant, address, sent_at)
);

-- Each event with the name of its export section and its details (a JSON object).
CREATE TABLE events (
    id          BIGINT          AUTO_INCREMENT PRIMARY KEY,
    tenant      INT             NOT NULL,
    message_id  VARCHAR(64),
    customer_id BIGINT,
    contact_id  BIGINT UNSIGNED,
    address     VARCHAR(254),
    section     ENUM('impressions', 'clicks', 'deliveries', 'errors', 'abuses', 'unsubscribes', 'surveys') NOT NULL,
    at          TIMESTAMP       NOT NULL DEFAULT CURRENT_TIMESTAMP,
    ip          VARBINARY(16),
    data        JSON,
    KEY (tenant, customer_id, section, at),
    KEY (tenant, contact_id, section, at),
    KEY (tenant, address, section, at)
);

INSERT INTO customer VALUES
  (1, 1001, 'Jane Doe', 'jane.doe@example.com', '+31 6 1234 5678', 1234.50, 4.5, 0.875, TRUE, 'pro',
   'gold,early bird', b'101', '{"newsletter": true, "language": "nl"}', x'89504e470d0a1a0a', '1990-04-12', 2021,
   '22:00:00', '2021-03-04 09:15:00', '2025-06-01 12:00:00'),
  (1, 7001, 'Ana Silva', 'Ana.Silva@example.com', '+351 91 234 5678', 98765432109.99, 3.25, 12.5, FALSE, 'plus',
   'new', b'010', '{"newsletter": false, "sizes": ["M", "L"], "height": 1.70}', x'00ff10', '1985-11-30', 2024,
   '838:59:59', '2024-02-29 22:59:59.999', '2025-01-01 00:00:00'),
  (1, 7002, 'Bram de Wit', 'bram@example.org', NULL, 0, NULL, NULL, FALSE, 'free',
   '', NULL, NULL, NULL, NULL, NULL, NULL, '2025-05-05 05:05:05', NULL),
  -- Another tenant's customer with the same id: never in tenant 1's exports.
  (2, 7001, 'Someone Else', 'someone@example.net', NULL, 5, NULL, NULL, FALSE, 'free',
   '', NULL, NULL, NULL, NULL, NULL, NULL, '2025-01-01 00:00:00', NULL);

INSERT INTO contact VALUES
  (1, 7101, 7001, 'work', 'ana@work.example', '2024-03-01 08:00:00'),
  (1, 7102, 7001, 'gift card', NULL, '2024-12-20 10:30:00'),
  (2, 7101, 7001, 'other tenant', 'x@other.example', '2024-01-01 00:00:00');

INSERT INTO messages VALUES
  ('shop-7001-1', 1, 7001, NULL, 'ana.silva@example.com', 'spring-sale', 'Spring sale: 20% off',
   '2025-03-20 07:00:00',
   'From: Shop <news@shop.example>\r\nTo: ana.silva@example.com\r\nSubject: Spring sale: 20% off\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Ana, everything is 20% off this week.\r\n'),
  ('shop-7001-2', 1, 7001, 7101, 'ana@work.example', 'invoice', 'Your invoice 2025-114',
   '2025-04-02 09:30:00',
   'From: Shop <billing@shop.example>\r\nTo: ana@work.example\r\nSubject: Your invoice 2025-114\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear Ana, attached is invoice 2025-114 (EUR 59.90).\r\n'),
  ('shop-1001-1', 1, 1001, NULL, 'Jane.Doe@example.com', 'spring-sale', 'Spring sale: 20% off',
   '2025-03-20 07:00:01',
   'From: Shop <news@shop.example>\r\nTo: Jane.Doe@example.com\r\nSubject: Spring sale: 20% off\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Jane, everything is 20% off this week.\r\n'),
  ('shop-other-1', 2, 7001, NULL, 'someone@example.net', 'x', 'Not for tenant 1',
   '2025-03-20 07:00:00', 'Subject: Not for tenant 1\r\n\r\nno\r\n');

INSERT INTO events (tenant, message_id, customer_id, contact_id, address, section, at, ip, data) VALUES
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'deliveries', '2025-03-20 07:00:02', NULL, '{"smtp": "250 2.0.0 OK"}'),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'impressions', '2025-03-20 08:15:00', INET6_ATON('198.51.100.7'), '{"useragent": "Mozilla/5.0"}'),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'clicks', '2025-03-20 08:16:30', INET6_ATON('198.51.100.7'), '{"link": "https://shop.example/sale", "useragent": "Mozilla/5.0"}'),
  (1, 'shop-7001-2', 7001, 7101, 'ana@work.example', 'errors', '2025-04-02 09:30:05', NULL, '{"smtp": "550 5.1.1 mailbox unavailable"}'),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'abuses', '2025-03-21 10:00:00', NULL, '{"feedback": "abuse"}'),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'unsubscribes', '2025-03-21 10:00:01', INET6_ATON('198.51.100.7'), '{"list": "newsletter"}'),
  (1, NULL, 7001, NULL, 'ana.silva@example.com', 'surveys', '2025-05-01 12:00:00', NULL, '{"survey": "satisfaction", "answers": [5, 4, null]}'),
  (1, 'shop-1001-1', 1001, NULL, 'jane.doe@example.com', 'impressions', '2025-03-20 09:00:00', INET6_ATON('203.0.113.9'), '{"useragent": "Thunderbird"}'),
  (2, 'shop-other-1', 7001, NULL, 'someone@example.net', 'impressions', '2025-03-20 09:00:00', NULL, NULL);
