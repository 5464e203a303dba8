-- A small shop's own database: the sample source of examples/postgres/sources.toml.
-- Customers belong to a tenant (the Datarequest account), have contacts (the subprofiles),
-- get messages (with their MIME bodies) and cause events of several kinds. The columns use
-- every type the mapping converts: integer, bigint, numeric, text, varchar, citext, boolean,
-- real, double precision, jsonb, json, arrays, bytea, date, timestamp and timestamptz, inet.
--
--   createdb shop && psql -d shop -f examples/postgres/schema.sql

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE customer (
    tenant      integer       NOT NULL,
    id          bigint        NOT NULL,
    name        text          NOT NULL,
    email       citext        NOT NULL,
    phone       varchar(32),
    balance     numeric(14,2) NOT NULL DEFAULT 0,
    rating      real,
    score       double precision,
    vip         boolean       NOT NULL DEFAULT false,
    preferences jsonb,
    tags        text[]        NOT NULL DEFAULT '{}',
    avatar      bytea,
    birthday    date,
    created_at  timestamptz   NOT NULL,
    updated_at  timestamp,
    PRIMARY KEY (tenant, id)
);

-- A customer's other addresses: a subprofile each. The id is numeric, as some shops keep them.
CREATE TABLE contact (
    tenant      integer       NOT NULL,
    id          numeric(20,0) NOT NULL,
    customer_id bigint        NOT NULL,
    label       varchar(40)   NOT NULL,
    email       citext,
    created_at  timestamptz   NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE messages (
    id          text          PRIMARY KEY,
    tenant      integer       NOT NULL,
    customer_id bigint,
    contact_id  numeric(20,0),
    address     citext        NOT NULL,
    mailing     varchar(40)   NOT NULL,
    subject     text          NOT NULL,
    sent_at     timestamptz   NOT NULL,
    body        text          NOT NULL
);

CREATE TABLE events (
    id          bigserial     PRIMARY KEY,
    tenant      integer       NOT NULL,
    message_id  text,
    customer_id bigint,
    contact_id  numeric(20,0),
    address     citext,
    kind        text          NOT NULL CHECK (kind IN ('open', 'click', 'delivery', 'bounce', 'complaint', 'unsubscribe', 'survey')),
    at          timestamptz   NOT NULL,
    ip          inet,
    user_agent  text,
    details     json,
    answers     integer[]
);

-- Each event with the name of its export section, and its details as one JSON object.
CREATE VIEW datarequest_events AS
SELECT e.id, e.tenant, e.message_id, e.customer_id, e.contact_id, e.address, e.at,
       CASE e.kind WHEN 'open' THEN 'impressions' WHEN 'click' THEN 'clicks' WHEN 'delivery' THEN 'deliveries'
                   WHEN 'bounce' THEN 'errors' WHEN 'complaint' THEN 'abuses' WHEN 'unsubscribe' THEN 'unsubscribes'
                   ELSE 'surveys' END AS section,
       jsonb_strip_nulls(jsonb_build_object('ip', e.ip, 'useragent', e.user_agent, 'answers', e.answers)
                         || coalesce(e.details::jsonb, '{}'::jsonb)) AS data
FROM events e;

CREATE INDEX ON messages (tenant, customer_id, sent_at);
CREATE INDEX ON messages (tenant, contact_id, sent_at);
CREATE INDEX ON messages (tenant, address, sent_at);
CREATE INDEX ON events (tenant, customer_id, kind, at);
CREATE INDEX ON events (tenant, contact_id, kind, at);
CREATE INDEX ON events (tenant, address, kind, at);

INSERT INTO customer VALUES
  (1, 1001, 'Jane Doe', 'jane.doe@example.com', '+31 6 1234 5678', 1234.50, 4.5, 0.875, true,
   '{"newsletter": true, "language": "nl"}', '{gold,"early bird"}', '\x89504e470d0a1a0a', '1990-04-12',
   '2021-03-04 09:15:00+00', '2025-06-01 12:00:00'),
  (1, 7001, 'Ana Silva', 'Ana.Silva@example.com', '+351 91 234 5678', 98765432109.99, 3.25, 12.5, false,
   '{"newsletter": false, "sizes": ["M", "L"]}', '{new}', '\x00ff10', '1985-11-30',
   '2024-02-29 23:59:59.999+01', '2025-01-01 00:00:00'),
  (1, 7002, 'Bram de Wit', 'bram@example.org', NULL, 0, NULL, NULL, false,
   NULL, '{}', NULL, NULL, '2025-05-05 05:05:05+00', NULL),
  -- Another tenant's customer with the same id: never in tenant 1's exports.
  (2, 7001, 'Someone Else', 'someone@example.net', NULL, 5, NULL, NULL, false,
   NULL, '{}', NULL, NULL, '2025-01-01 00:00:00+00', NULL);

INSERT INTO contact VALUES
  (1, 7101, 7001, 'work', 'ana@work.example', '2024-03-01 08:00:00+00'),
  (1, 7102, 7001, 'gift card', NULL, '2024-12-20 10:30:00+00'),
  (2, 7101, 7001, 'other tenant', 'x@other.example', '2024-01-01 00:00:00+00');

INSERT INTO messages VALUES
  ('shop-7001-1', 1, 7001, NULL, 'ana.silva@example.com', 'spring-sale', 'Spring sale: 20% off',
   '2025-03-20 07:00:00+00',
   E'From: Shop <news@shop.example>\r\nTo: ana.silva@example.com\r\nSubject: Spring sale: 20% off\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Ana, everything is 20% off this week.\r\n'),
  ('shop-7001-2', 1, 7001, 7101, 'ana@work.example', 'invoice', 'Your invoice 2025-114',
   '2025-04-02 09:30:00+00',
   E'From: Shop <billing@shop.example>\r\nTo: ana@work.example\r\nSubject: Your invoice 2025-114\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear Ana, attached is invoice 2025-114 (EUR 59.90).\r\n'),
  ('shop-1001-1', 1, 1001, NULL, 'Jane.Doe@example.com', 'spring-sale', 'Spring sale: 20% off',
   '2025-03-20 07:00:01+00',
   E'From: Shop <news@shop.example>\r\nTo: Jane.Doe@example.com\r\nSubject: Spring sale: 20% off\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Jane, everything is 20% off this week.\r\n'),
  ('shop-other-1', 2, 7001, NULL, 'someone@example.net', 'x', 'Not for tenant 1',
   '2025-03-20 07:00:00+00', E'Subject: Not for tenant 1\r\n\r\nno\r\n');

INSERT INTO events (tenant, message_id, customer_id, contact_id, address, kind, at, ip, user_agent, details, answers) VALUES
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'delivery', '2025-03-20 07:00:02+00', NULL, NULL, '{"smtp": "250 2.0.0 OK"}', NULL),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'open', '2025-03-20 08:15:00+00', '198.51.100.7', 'Mozilla/5.0', NULL, NULL),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'click', '2025-03-20 08:16:30+00', '198.51.100.7', 'Mozilla/5.0', '{"link": "https://shop.example/sale"}', NULL),
  (1, 'shop-7001-2', 7001, 7101, 'ana@work.example', 'bounce', '2025-04-02 09:30:05+00', NULL, NULL, '{"smtp": "550 5.1.1 mailbox unavailable"}', NULL),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'complaint', '2025-03-21 10:00:00+00', NULL, NULL, '{"feedback": "abuse"}', NULL),
  (1, 'shop-7001-1', 7001, NULL, 'ana.silva@example.com', 'unsubscribe', '2025-03-21 10:00:01+00', '198.51.100.7', NULL, '{"list": "newsletter"}', NULL),
  (1, NULL, 7001, NULL, 'ana.silva@example.com', 'survey', '2025-05-01 12:00:00+00', NULL, NULL, '{"survey": "satisfaction"}', '{5,4,NULL}'),
  (1, 'shop-1001-1', 1001, NULL, 'jane.doe@example.com', 'open', '2025-03-20 09:00:00+00', '203.0.113.9', 'Thunderbird', NULL, NULL),
  (2, 'shop-other-1', 7001, NULL, 'someone@example.net', 'open', '2025-03-20 09:00:00+00', NULL, NULL, NULL, NULL);
