/**
 * Writes polyproxy.schema.json at the package root (run by `npm run build`);
 * test/unit/config/json-schema.test.ts fails when the committed file is stale.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText, JSON_SCHEMA_FILE } from '../src/config/json-schema.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
writeFileSync(path.join(root, JSON_SCHEMA_FILE), configJsonSchemaText());
