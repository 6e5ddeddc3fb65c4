/**
 * The process's one Prometheus registry (prom-client). Every module
 * registers its metrics here; the admin server serves it, aggregated across
 * workers. Nothing here is touched per chunk: byte and connection figures
 * are read from the listeners' counters when a scrape collects them.
 */
import { Registry } from 'prom-client';

export const registry = new Registry();
