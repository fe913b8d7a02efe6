-- The scaled scenario clock (CONVEER_TIME_SCALE) is anchored here, one row shared by every
-- replica and every restart: scenario time = scenario_at + (real now - real_at) × scale. Without
-- it each process started its own clock at its own start, so a restart set scaled time back.
CREATE TABLE warming_clock (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  real_at timestamptz NOT NULL,
  scenario_at timestamptz NOT NULL,
  scale double precision NOT NULL CHECK (scale > 0)
);
