// How many SMS segments a body costs — the same rules as sms/segments.py (SPEC S11 step 5):
// GSM-7 160 per single message / 153 per part (extended characters count twice), otherwise
// UCS-2 70 / 67 UTF-16 units. Bodies over 1,600 characters are refused (Twilio's limit).

export const MAX_BODY_CHARS = 1600;

const GSM7_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM7_EXTENDED = new Set("^{}\\[~]|€\f");

/** Length as Python counts it (code points), which is what the 1,600 limit is checked on. */
export function charCount(body) {
  let n = 0;
  for (const _ of body || "") n += 1; // eslint-disable-line no-unused-vars
  return n;
}

/** {encoding: "GSM-7" | "UCS-2", units, segments, chars} */
export function countSegments(body) {
  body = body || "";
  let gsm = true;
  let septets = 0;
  let chars = 0;
  for (const ch of body) {
    chars += 1;
    if (GSM7_BASIC.has(ch)) septets += 1;
    else if (GSM7_EXTENDED.has(ch)) septets += 2;
    else gsm = false;
  }
  let units, single, multi, encoding;
  if (gsm) {
    [units, single, multi, encoding] = [septets, 160, 153, "GSM-7"];
  } else {
    [units, single, multi, encoding] = [body.length, 70, 67, "UCS-2"]; // UTF-16 code units
  }
  let segments;
  if (units === 0) segments = 1;
  else if (units <= single) segments = 1;
  else segments = Math.ceil(units / multi);
  return { encoding, units, segments: Math.max(segments, 1), chars };
}
