-- The database the masking corpus runs against (tests/suite/masking_corpus.rs).
-- Sensitive values: the passwords 'hunter2-hunter2' and 'sw0rdfish-sw0rdfish' (column
-- names mask them), Jane's email 'jane.doe@example.com' (name and content), the card
-- '4111 1111 1111 1111' inside a note (content), the API key in `secrets.api_key`, and
-- the password in `vault.keys`, a schema outside the default search_path.
CREATE TABLE customers (
  id int PRIMARY KEY, name text, email text, password text, note text,
  active boolean, visits int, profile jsonb, tags text[]
);
INSERT INTO customers VALUES
  (1, 'Jane', 'jane.doe@example.com', 'hunter2-hunter2', 'pay with 4111 1111 1111 1111 today',
   true, 3, '{"contact": "jane.doe@example.com"}', ARRAY['vip']),
  (2, 'Bob', NULL, 'sw0rdfish-sw0rdfish', 'no card on file', false, 0, NULL, ARRAY[]::text[]);
CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric, status text);
INSERT INTO orders VALUES (10, 1, 25.50, 'paid'), (11, 2, 7.00, 'open');
CREATE TABLE secrets (id int, api_key text);
INSERT INTO secrets VALUES (1, 'sk_live_4eC39HqLyjWDarjtT1zdp7dc');
CREATE VIEW contacts AS SELECT id, name, email AS reach, password AS word FROM customers;
CREATE VIEW contacts2 AS SELECT id, upper(reach) AS r, word || '' AS w, name FROM contacts;
CREATE FUNCTION password_of(int) RETURNS text LANGUAGE sql
  AS 'SELECT password FROM customers WHERE id = $1';
CREATE FUNCTION first_password() RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN RETURN (SELECT password FROM customers ORDER BY id LIMIT 1); END $$;
CREATE FUNCTION passwords() RETURNS SETOF text LANGUAGE sql AS 'SELECT password FROM customers';
CREATE FUNCTION shout(t text) RETURNS int LANGUAGE plpgsql
  AS $$ BEGIN RAISE NOTICE 'heard %', t; RETURN 1; END $$;
CREATE SCHEMA vault;
CREATE TABLE vault.keys (id int, password text);
INSERT INTO vault.keys VALUES (1, 'vault-pass-123');
ANALYZE customers;
