#!/usr/bin/env bash
# A short tour of the API with curl and jq, against the social template served by
# ./scripts/serve (or any charpente serving it: CHARPENTE_URL=http://host:port).
# Safe to run again on the same database: Ada signs up once, then signs in.
set -euo pipefail
API="${CHARPENTE_URL:-http://127.0.0.1:8000}"

# sign up (201 the first time, 409 Conflict once the email is taken), then sign in:
# the token endpoint answers a short-lived access token
curl -s -o /dev/null -w 'signup: %{http_code}\n' "$API/v1/auth/signup" \
  -H 'Content-Type: application/json' \
  -d '{"email": "ada@example.com", "password": "correct horse battery staple", "handle": "ada"}'
TOKEN=$(curl -s "$API/v1/auth/token" -d grant_type=password \
  -d username=ada@example.com -d password='correct horse battery staple' | jq -r .access_token)
ADA=$(curl -s "$API/v1/auth/me" -H "Authorization: Bearer $TOKEN" | jq -r .id)
echo "signed in as $ADA"

# post as Ada: the author comes from the token, never from the body
curl -s -o /dev/null -w 'post: %{http_code}\n' "$API/v1/posts" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -H 'Idempotency-Key: first-post' -d '{"body": "Hello, world"}'
# 201 Created, Location: /v1/posts/<id>, ETag: "1" (run again: the same answer, replayed)
POST=$(curl -s "$API/v1/posts" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d '{"body": "Hello again"}' | jq -r .id)
echo "posted $POST"
curl -s -o /dev/null -w 'anonymous post: %{http_code}\n' "$API/v1/posts" \
  -H 'Content-Type: application/json' -d '{"body": "anonymous"}'
# 401 Unauthorized: the rules let only signed-in accounts post

# list: anyone may read public posts; filter with the expression language, newest first
PAGE=$(curl -s -G "$API/v1/posts" \
  --data-urlencode "filter=author == \"$ADA\" and visibility == \"public\"" \
  --data-urlencode 'sort=-created_at' --data-urlencode 'limit=1')
echo "first page: $(jq -c '[.data[].body]' <<<"$PAGE")"
# 200 {"data": [...], "page": {"limit": 1, "next_cursor": "…"}}: pass it back as cursor=…
NEXT_CURSOR=$(jq -r .page.next_cursor <<<"$PAGE")
curl -s -G "$API/v1/posts" \
  --data-urlencode "filter=author == \"$ADA\" and visibility == \"public\"" \
  --data-urlencode 'sort=-created_at' --data-urlencode 'limit=1' \
  --data-urlencode "cursor=$NEXT_CURSOR" | jq -c '{next_page: [.data[].body]}'
# 200: the next page

# change it, only if nobody changed it since version 1 (else 412 Precondition Failed)
curl -s -o /dev/null -D - "$API/v1/posts/$POST" -X PATCH \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/merge-patch+json' \
  -H 'If-Match: "1"' -d '{"visibility": "private"}' | tr -d '\r' | grep -iE '^(HTTP|etag)'
# 200 OK, ETag: "2"
curl -s -o /dev/null -w 'patch again: %{http_code}\n' "$API/v1/posts/$POST" -X PATCH \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/merge-patch+json' \
  -H 'If-Match: "1"' -d '{"visibility": "public"}'
# 412 Precondition Failed: it is at version 2 now
