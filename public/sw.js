// CivicBase service worker: keeps the app shell available offline.
//
// Every build writes its own version and file list below (public/stamp-sw.sh),
// so a new deployment installs as a new cache and removes the old one once
// it takes over. Data never passes through here: it lives in IndexedDB.
const VERSION = "__SHELL_VERSION__";
const SHELL = ["__SHELL_FILES__"];
const CACHE = `civicbase-shell-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(keys.filter((k) => k.startsWith("civicbase-shell-") && k !== CACHE).map((k) => caches.delete(k))),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) {
    return;
  }
  if (request.mode === "navigate") {
    // The page: the network when it answers (it may name a newer build),
    // else the cached shell.
    event.respondWith(
      fetch(request).catch(() => caches.match("./", { ignoreSearch: true }).then((r) => r || caches.match("index.html"))),
    );
    return;
  }
  event.respondWith(
    caches.match(request, { ignoreSearch: true }).then((cached) => cached || fetch(request)),
  );
});
