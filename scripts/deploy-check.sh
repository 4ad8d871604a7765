#!/usr/bin/env bash
# Validates the deployment manifests against their schemas, offline once installed:
# deploy/k8s/**/*.yaml against the Kubernetes API (kubernetes-validate, strict: unknown fields
# fail) and deploy/compose.yaml against the Compose specification (check-jsonschema's
# vendored compose-spec). Kustomizations have no schema in either and are checked, with
# everything the shop itself must agree to, by tests/api/deploy.rs.
#
# Both tools are installed, at the versions pinned in scripts/deploy-check/requirements.txt,
# into a throwaway virtualenv that is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d -t shop-deploy-check.XXXXXX)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/deploy-check/requirements.txt

mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
"$work/venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "deploy-check.sh: ${#manifests[@]} Kubernetes manifests valid" >&2
"$work/venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
