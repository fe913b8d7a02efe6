-- Counts the /metrics gauges read at every scrape, kept by triggers like account_counts, so a
-- scrape reads a few rows instead of counting a million (conveer_proxies, conveer_proxy_slots,
-- conveer_warming_tasks).
--
-- Inserts and deletes: statement-level triggers over the transition table, one aggregated upsert
-- per statement (a bulk insert of 100,000 rows costs one counter update; a row-level trigger
-- would update the same counter row 100,000 times in one transaction, each update walking the
-- chain of versions the earlier ones left: quadratic, measured at minutes).
-- Updates: row-level triggers that fire only when a counted column changes, so the workers' and
-- health checks' frequent updates of other columns cost one WHEN test and no statement-level
-- transition table. The code changes counted columns a row or a batch (at most 500) at a time.
-- A change that moves a row between two keys updates both in key order (no deadlock between two
-- such changes).
-- The triggers are created before the counts are filled: CREATE TRIGGER holds off concurrent
-- writes until this migration commits, so no row is missed or counted twice.

-- The proxy pool by health: proxies, their capacity (slots) and the slots allocated. Every
-- allocation and release changes `allocated`, so the counts are spread over 16 rows per health
-- value by a hash of the proxy id (a reader sums them): concurrent allocations of different
-- proxies then rarely wait for one another on a counter row, as they would on a single one.
CREATE TABLE proxy_counts (
  healthy boolean NOT NULL,
  shard smallint NOT NULL,
  n bigint NOT NULL DEFAULT 0,
  capacity bigint NOT NULL DEFAULT 0,
  allocated bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (healthy, shard)
);

CREATE FUNCTION proxy_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proxy_counts AS c (healthy, shard, n, capacity, allocated)
    SELECT healthy, hashtext(id) & 15, count(*), sum(capacity), sum(allocated) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (healthy, shard) DO UPDATE SET n = c.n + EXCLUDED.n, capacity = c.capacity + EXCLUDED.capacity, allocated = c.allocated + EXCLUDED.allocated;
  RETURN NULL;
END $$;

CREATE FUNCTION proxy_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proxy_counts AS c (healthy, shard, n, capacity, allocated)
    SELECT healthy, hashtext(id) & 15, -count(*), -sum(capacity), -sum(allocated) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (healthy, shard) DO UPDATE SET n = c.n + EXCLUDED.n, capacity = c.capacity + EXCLUDED.capacity, allocated = c.allocated + EXCLUDED.allocated;
  RETURN NULL;
END $$;

CREATE FUNCTION proxy_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proxy_counts AS c (healthy, shard, n, capacity, allocated)
    SELECT healthy, hashtext(NEW.id) & 15, sum(n), sum(capacity), sum(allocated) FROM (
      SELECT OLD.healthy AS healthy, -1 AS n, -OLD.capacity AS capacity, -OLD.allocated AS allocated
      UNION ALL
      SELECT NEW.healthy, 1, NEW.capacity, NEW.allocated
    ) d GROUP BY healthy ORDER BY healthy
    ON CONFLICT (healthy, shard) DO UPDATE SET n = c.n + EXCLUDED.n, capacity = c.capacity + EXCLUDED.capacity, allocated = c.allocated + EXCLUDED.allocated;
  RETURN NULL;
END $$;

CREATE TRIGGER proxies_count_insert AFTER INSERT ON proxies
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION proxy_counts_add();
CREATE TRIGGER proxies_count_delete AFTER DELETE ON proxies
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION proxy_counts_remove();
CREATE TRIGGER proxies_count_update AFTER UPDATE OF healthy, capacity, allocated ON proxies FOR EACH ROW
  WHEN (OLD.healthy IS DISTINCT FROM NEW.healthy OR OLD.capacity IS DISTINCT FROM NEW.capacity OR OLD.allocated IS DISTINCT FROM NEW.allocated)
  EXECUTE FUNCTION proxy_counts_move();

INSERT INTO proxy_counts (healthy, shard, n, capacity, allocated)
  SELECT healthy, hashtext(id) & 15, count(*), coalesce(sum(capacity), 0), coalesce(sum(allocated), 0) FROM proxies GROUP BY 1, 2;

-- Warming tasks by status.
CREATE TABLE warming_task_counts (
  status smallint PRIMARY KEY,
  n bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION warming_task_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warming_task_counts AS c (status, n)
    SELECT status, count(*) FROM new_rows GROUP BY status ORDER BY status
    ON CONFLICT (status) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION warming_task_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warming_task_counts AS c (status, n)
    SELECT status, -count(*) FROM old_rows GROUP BY status ORDER BY status
    ON CONFLICT (status) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION warming_task_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO warming_task_counts AS c (status, n)
    SELECT status, sum(n) FROM (SELECT OLD.status AS status, -1 AS n UNION ALL SELECT NEW.status, 1) d GROUP BY status ORDER BY status
    ON CONFLICT (status) DO UPDATE SET n = c.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE TRIGGER warming_tasks_count_insert AFTER INSERT ON warming_tasks
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION warming_task_counts_add();
CREATE TRIGGER warming_tasks_count_delete AFTER DELETE ON warming_tasks
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION warming_task_counts_remove();
CREATE TRIGGER warming_tasks_count_update AFTER UPDATE OF status ON warming_tasks FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION warming_task_counts_move();

INSERT INTO warming_task_counts (status, n) SELECT status, count(*) FROM warming_tasks GROUP BY status;
