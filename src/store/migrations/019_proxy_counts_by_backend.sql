-- proxy_counts (migration 011) kept by the row-level update trigger, on the shard of the backend
-- that makes the change instead of the shard of the proxy's id. The counts are only ever read
-- summed over the shards, so any shard may take a delta. By the proxy's id, a statement (or a
-- transaction) that changes many proxies (AllocateProxy and ReleaseProxy calls batched into one
-- statement) updated up to 16 shard rows in the order of its rows, waited for every concurrent
-- batch on them until it committed, and deadlocked with the ones that took them in another
-- order. By the backend, a transaction updates one shard row per health value however many
-- proxies it changes, which no other connection's transaction writes (up to 64 shards; two
-- connections whose pids meet on one shard only wait for each other). A change of `allocated`
-- alone (every allocation and release) is one upsert without the aggregate.
-- Only the trigger function changes: code running on the old schema is not affected.
CREATE OR REPLACE FUNCTION proxy_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.healthy = NEW.healthy THEN
    INSERT INTO proxy_counts AS c (healthy, shard, n, capacity, allocated)
      VALUES (NEW.healthy, pg_backend_pid() & 63, 0, NEW.capacity - OLD.capacity, NEW.allocated - OLD.allocated)
      ON CONFLICT (healthy, shard) DO UPDATE SET capacity = c.capacity + EXCLUDED.capacity, allocated = c.allocated + EXCLUDED.allocated;
  ELSE
    INSERT INTO proxy_counts AS c (healthy, shard, n, capacity, allocated)
      VALUES (OLD.healthy, pg_backend_pid() & 63, -1, -OLD.capacity, -OLD.allocated), (NEW.healthy, pg_backend_pid() & 63, 1, NEW.capacity, NEW.allocated)
      ORDER BY 1
      ON CONFLICT (healthy, shard) DO UPDATE SET n = c.n + EXCLUDED.n, capacity = c.capacity + EXCLUDED.capacity, allocated = c.allocated + EXCLUDED.allocated;
  END IF;
  RETURN NULL;
END $$;
