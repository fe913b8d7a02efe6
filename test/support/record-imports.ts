/**
 * Preloaded into a child process (NODE_OPTIONS=--import=…): appends every `@opentelemetry/*`
 * module the process resolves to the file named by TEST_IMPORTS_LOG, so a test can tell
 * whether the SDK was loaded at all.
 */
import { appendFileSync } from "node:fs";
import { registerHooks } from "node:module";

const out = process.env.TEST_IMPORTS_LOG;
if (out) {
  registerHooks({
    resolve(specifier, context, next) {
      if (specifier.startsWith("@opentelemetry/")) appendFileSync(out, `${specifier}\n`);
      return next(specifier, context);
    },
  });
}
