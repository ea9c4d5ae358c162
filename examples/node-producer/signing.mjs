// Celery's message signing from Node: the body its `auth` serializer writes, signed with the
// producer's RSA key (node:crypto, no other library), for a worker with ACCOUNT_RESET_SIGNING_*
// set. The worker verifies it with the producer's certificate, which it holds in its store.
//
//   import { signedBody } from "./signing.mjs";
//   const signing = { key: readFileSync(keyFile), certificate: readFileSync(certificateFile) };
//   const message = { ...signedBody(kwargs, signing), headers, properties };  // then LPUSH it
//
// kwargs must hold the command_id: the headers (task name, task id) are not signed, and the
// worker refuses a signed command without one, so a replayed body meets its first outcome.
import { X509Certificate, constants, sign } from "node:crypto";

// celery.security.serialization.SecureSerializer._pack: base64 of
//   base64(signer) SEP base64(signature) SEP content type SEP content encoding SEP body
// where the signature is RSA-PSS (maximum salt length, MGF1) with SHA-256 over the body's bytes.
const SEPARATOR = Buffer.from([0x00, 0x01]);
export const SIGNED_CONTENT_TYPE = "application/data";

// Celery's name for a certificate: the values of its issuer's attributes, in order, joined by
// spaces, then its serial number in decimal. Node's `issuer` is one `KEY=value` per line, with
// `\` before special characters; a name Node writes otherwise (a multi-valued attribute, hex
// escapes) can be given as `signer` instead.
export function signerId(certificatePem) {
  const certificate = new X509Certificate(certificatePem);
  const values = certificate.issuer
    .split("\n")
    .map((line) => line.slice(line.indexOf("=") + 1).replace(/\\(.)/g, "$1"));
  return `${values.join(" ")} ${BigInt(`0x${certificate.serialNumber}`).toString(10)}`;
}

// The envelope fields of a signed protocol-2 command: `body` (base64 for kombu's
// body_encoding), `content-type` and `content-encoding`. `key` is the producer's private key
// (PEM), `certificate` its certificate (PEM).
export function signedBody(kwargs, { key, certificate, signer = signerId(certificate) }) {
  if (typeof kwargs.command_id !== "string" || kwargs.command_id === "") {
    throw new Error("a signed command must carry its command_id in its kwargs");
  }
  const body = Buffer.from(JSON.stringify([[], kwargs, {}]), "utf8");
  const signature = sign("sha256", body, {
    key,
    padding: constants.RSA_PKCS1_PSS_PADDING,
    saltLength: constants.RSA_PSS_SALTLEN_MAX_SIGN,
  });
  const packed = Buffer.concat([
    Buffer.from(Buffer.from(signer, "utf8").toString("base64")),
    SEPARATOR,
    Buffer.from(signature.toString("base64")),
    SEPARATOR,
    Buffer.from("application/json"),
    SEPARATOR,
    Buffer.from("utf-8"),
    SEPARATOR,
    body,
  ]);
  // Celery's serializer gives base64 text; kombu's Redis envelope base64s that once more.
  const serialized = packed.toString("base64");
  return {
    body: Buffer.from(serialized).toString("base64"),
    "content-type": SIGNED_CONTENT_TYPE,
    "content-encoding": "utf-8",
  };
}
