import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the UI with hot reload and sends /api/ to a running appliance
// (KILLKRILL_API, default http://127.0.0.1:8080); the real build is embedded in the binary.
const api = process.env.KILLKRILL_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The binary embeds every file of dist/: no source maps in it.
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: { "/api": { target: api, changeOrigin: false } },
  },
});
