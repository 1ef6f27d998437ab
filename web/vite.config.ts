import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` serves the UI with hot reload and sends /api/ to a running appliance
// (DEV_API_TARGET, default http://127.0.0.1:8080); the real build is embedded in the binary.
const api = process.env.DEV_API_TARGET ?? "http://127.0.0.1:8080";

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
