#!/usr/bin/env -S node
import { runCli } from "../src/cli/main.ts";

runCli();
