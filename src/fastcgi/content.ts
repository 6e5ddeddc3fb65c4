/**
 * Request bodies: url-encoded forms, JSON, multipart/form-data (fields and
 * files), raw bytes, and streams (stdin sent as it is produced).
 */
import { randomBytes } from 'node:crypto';
import { FastCgiError } from './errors.ts';

/** A request body: its Content-Type, its length when known, and its bytes. */
export interface RequestContent {
  readonly contentType: string;
  /** Bytes in the body; required for streams (PHP reads CONTENT_LENGTH bytes of stdin). */
  readonly length: number;
  /** The whole body, or the body as it is produced. */
  body(): Uint8Array | AsyncIterable<Uint8Array>;
}

export type FormValue = string | number | boolean | ReadonlyArray<string | number | boolean>;

/** `application/x-www-form-urlencoded`; arrays become `name[]=a&name[]=b` unless the name already ends in `[]`. */
export class UrlEncodedFormData implements RequestContent {
  readonly contentType = 'application/x-www-form-urlencoded';
  readonly #bytes: Buffer;

  constructor(fields: Readonly<Record<string, FormValue>>) {
    this.#bytes = Buffer.from(encodeForm(fields));
  }

  get length(): number {
    return this.#bytes.length;
  }

  body(): Uint8Array {
    return this.#bytes;
  }
}

export function encodeForm(fields: Readonly<Record<string, FormValue>>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) {
      const key = name.endsWith('[]') ? name : `${name}[]`;
      for (const v of value as ReadonlyArray<string | number | boolean>) search.append(key, String(v));
    } else {
      search.append(name, String(value));
    }
  }
  return search.toString();
}

/** `application/json` (charset UTF-8). */
export class JsonData implements RequestContent {
  readonly contentType: string;
  readonly #bytes: Buffer;

  constructor(value: unknown, contentType = 'application/json') {
    const text = JSON.stringify(value);
    if (text === undefined) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', 'JsonData: the value is not serialisable');
    this.#bytes = Buffer.from(text);
    this.contentType = contentType;
  }

  get length(): number {
    return this.#bytes.length;
  }

  body(): Uint8Array {
    return this.#bytes;
  }
}

export interface MultipartFile {
  /** The file name the application sees ($_FILES[field]['name']). */
  readonly filename: string;
  readonly content: string | Uint8Array;
  readonly contentType?: string;
}

/** `multipart/form-data` with fields and files (RFC 7578). */
export class MultipartFormData implements RequestContent {
  readonly contentType: string;
  readonly boundary: string;
  readonly #bytes: Buffer;

  constructor(fields: Readonly<Record<string, FormValue>> = {}, files: Readonly<Record<string, MultipartFile>> = {}, boundary = `----polyproxy${randomBytes(12).toString('hex')}`) {
    if (!/^[0-9A-Za-z'()+_,\-./:=?]{1,70}$/.test(boundary)) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `bad multipart boundary ${JSON.stringify(boundary)}`);
    this.boundary = boundary;
    this.contentType = `multipart/form-data; boundary=${boundary}`;
    const parts: Buffer[] = [];
    const quote = (s: string): string => s.replace(/["\r\n\\]/g, (c) => encodeURIComponent(c));
    for (const [name, value] of Object.entries(fields)) {
      const values = Array.isArray(value) ? (value as ReadonlyArray<string | number | boolean>) : [value as string | number | boolean];
      const key = Array.isArray(value) && !name.endsWith('[]') ? `${name}[]` : name;
      for (const v of values) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${quote(key)}"\r\n\r\n${String(v)}\r\n`));
    }
    for (const [name, file] of Object.entries(files)) {
      parts.push(
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"; filename="${quote(file.filename)}"\r\nContent-Type: ${file.contentType ?? 'application/octet-stream'}\r\n\r\n`),
        typeof file.content === 'string' ? Buffer.from(file.content) : Buffer.from(file.content.buffer, file.content.byteOffset, file.content.byteLength),
        Buffer.from('\r\n'),
      );
    }
    parts.push(Buffer.from(`--${boundary}--\r\n`));
    this.#bytes = Buffer.concat(parts);
  }

  get length(): number {
    return this.#bytes.length;
  }

  body(): Uint8Array {
    return this.#bytes;
  }
}

/** Raw bytes or text with a content type. */
export class RawContent implements RequestContent {
  readonly contentType: string;
  readonly #bytes: Uint8Array;

  constructor(bytes: string | Uint8Array, contentType = 'application/octet-stream') {
    this.#bytes = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
    this.contentType = contentType;
  }

  get length(): number {
    return this.#bytes.length;
  }

  body(): Uint8Array {
    return this.#bytes;
  }
}

/**
 * A body streamed to the application's stdin as it is produced (files,
 * uploads, another response). `length` must be exact: the application
 * reads CONTENT_LENGTH bytes; a source that yields a different count fails
 * the request with FCGI_ERR_INVALID_ARGUMENT.
 */
export class StreamContent implements RequestContent {
  readonly contentType: string;
  readonly length: number;
  readonly #source: AsyncIterable<Uint8Array>;

  constructor(source: AsyncIterable<Uint8Array>, length: number, contentType = 'application/octet-stream') {
    if (!Number.isSafeInteger(length) || length < 0) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', `StreamContent length ${length} is not a byte count`);
    this.#source = source;
    this.length = length;
    this.contentType = contentType;
  }

  body(): AsyncIterable<Uint8Array> {
    return this.#source;
  }
}
