/**
 * Text that came from outside (a request's field, a peer's message) made safe to show or to send back
 * in a status: valid UTF-16 (lone surrogates make `encodeURI` throw, which grpc-js and Connect call on
 * every status message), no control characters that would move a terminal's cursor, and bounded in
 * length so that one long value cannot overflow a response's headers.
 */

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
/** Control characters but tab and newline (messages may have several lines). */
const controlButLayout = /(?![\n\t])\p{Cc}/gu;
const anyControl = /\p{Cc}/gu;
const named: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const ellipsis = "…";

function escapeControl(char: string): string {
  return named[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** Replaces unpaired surrogates with U+FFFD, the way a UTF-8 encoder would. */
export function wellFormed(text: string): string {
  return text.replace(loneSurrogate, "\uFFFD");
}

/**
 * The first `max` code points of `text`, with an ellipsis in place of the rest; never splits a
 * surrogate pair. Cheap on huge strings: it looks at no more than `max` code points.
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = 0;
  for (let count = 0; count < max - 1 && end < text.length; count++) {
    const code = text.codePointAt(end) ?? 0;
    end += code > 0xffff ? 2 : 1;
  }
  if (end >= text.length) return text;
  // Exactly `max` code points: the last one fits where the ellipsis would go.
  if (end + ((text.codePointAt(end) ?? 0) > 0xffff ? 2 : 1) === text.length) return text;
  return `${text.slice(0, end)}${ellipsis}`;
}

/** A value quoted inside a message: one line, every control character escaped, at most `max` code points. */
export function shownValue(value: string, max = 80): string {
  return wellFormed(truncate(value, max)).replace(anyControl, escapeControl);
}

/** A whole message: well formed, control characters but newline and tab escaped, at most `max` code points. */
export function shownMessage(message: string, max: number): string {
  return wellFormed(truncate(message, max)).replace(controlButLayout, escapeControl);
}
