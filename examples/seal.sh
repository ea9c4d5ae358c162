#!/usr/bin/env bash
# Seal one secret field for account-reset-worker with nothing but openssl, in the LEGACY format:
# a Fernet token (https://github.com/fernet/spec) under the shared PAYLOAD_KEY. It binds nothing,
# so the worker opens it only with ACCOUNT_RESET_LEGACY_FERNET_SEALED=true, until 0.3.0 removes
# it. Producers seal to the worker's public key instead (a JWE; docs/security.md: "The sealed format"),
# which openssl alone cannot reasonably do. Reads the secret on standard input, prints the
# token; send the field as {"sealed": "<token>"}.
#
#   printf %s "$NEW_PASSWORD" | ACCOUNT_RESET_PAYLOAD_KEY=... examples/seal.sh
set -euo pipefail

key="${ACCOUNT_RESET_PAYLOAD_KEY%%,*}"  # the first (newest) key seals
hex() { od -An -v -tx1 | tr -d ' \n'; }
unhex() { printf '%b' "$(sed 's/../\\x&/g')"; }
b64url_decode() { local s; s=$(tr '_-' '/+'); while (( ${#s} % 4 )); do s+='='; done; base64 -d <<<"$s"; }

key_hex=$(printf %s "$key" | b64url_decode | hex)
[[ ${#key_hex} == 64 ]] || { echo "ACCOUNT_RESET_PAYLOAD_KEY is not a Fernet key" >&2; exit 2; }
signing_key=${key_hex:0:32}
encryption_key=${key_hex:32:32}

iv=$(openssl rand -hex 16)
timestamp=$(printf '%016x' "$(date +%s)")
ciphertext=$(openssl enc -aes-128-cbc -K "$encryption_key" -iv "$iv" | hex)
signed="80${timestamp}${iv}${ciphertext}"
mac=$(printf %s "$signed" | unhex | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$signing_key" -binary | hex)
printf %s "${signed}${mac}" | unhex | base64 -w0 | tr '+/' '-_'
echo
