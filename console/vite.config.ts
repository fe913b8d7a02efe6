// The console's build: `npm run build:console` (run by `prepare`, so `npm ci` builds it) writes console/dist,
// which the HTTP port serves at `/`. The console imports only the generated descriptors under src/gen.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline <script> or data: module preload polyfill: the console's CSP allows only 'self' scripts.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    // `vite --config console/vite.config.ts` in development: the API from a running `conveer start`.
    proxy: { "^/[^/]+\\.[^/]+/[^/]+$": "http://127.0.0.1:8080" },
  },
});
