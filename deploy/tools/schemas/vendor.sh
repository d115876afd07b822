#!/usr/bin/env bash
# Regenerates the JSON schemas in deploy/schemas/ from their sources, at the versions pinned below; the result
# is committed, so `make deploy-check` and the tests validate offline. Run it after changing a version (then
# update deploy/schemas/README.md and the paths in deploy/tools/deploy_check.py) or the kinds listed here.
#
#   Kubernetes           k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy: api/openapi-spec/swagger.json
#   Strimzi              io.strimzi:api and io.strimzi:crd-generator $STRIMZI_VERSION from Maven Central: the CRDs
#                        generated the way Strimzi's build generates packaging/install/cluster-operator/04*-Crd-*.yaml
#                        (needs Java 21 or newer: JAVA_HOME, default /usr/lib/jvm/temurin-25-jdk-amd64)
#   Prometheus Operator  github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION from the
#                        Go module proxy: example/prometheus-operator-crd/monitoring.coreos.com_*.yaml
#
# Downloads go to <repo>/.local/cache/schemas (git-ignored).
set -euo pipefail
KUBERNETES_VERSION=v1.30.14
STRIMZI_VERSION=1.2.0
PROMETHEUS_OPERATOR_VERSION=v0.94.1
# The Kubernetes kinds the overlays create (group/version/kind; core for the core group).
KUBERNETES_KINDS=(
  core/v1/ConfigMap core/v1/Secret core/v1/Service core/v1/ServiceAccount
  apps/v1/Deployment batch/v1/CronJob batch/v1/Job autoscaling/v2/HorizontalPodAutoscaler
  policy/v1/PodDisruptionBudget networking.k8s.io/v1/NetworkPolicy networking.k8s.io/v1/Ingress
)
STRIMZI_CRDS=(io.strimzi.api.kafka.model.topic.KafkaTopic io.strimzi.api.kafka.model.user.KafkaUser)
PROMETHEUS_OPERATOR_CRDS=(servicemonitors prometheusrules podmonitors)

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TOOLS="$ROOT/deploy/tools/schemas"
OUT="$ROOT/deploy/schemas"
CACHE="$ROOT/.local/cache/schemas"
PY=${PY:-$ROOT/.venv/bin/python}
JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
GOPROXY_URL=${GOPROXY_URL:-https://proxy.golang.org}
mkdir -p "$CACHE"

module_zip() {  # module version -> path of the module's zip in the cache
  local zip="$CACHE/${1//\//_}@$2.zip"
  if [[ ! -s "$zip" ]]; then
    curl -fsSL -o "$zip.tmp" "$GOPROXY_URL/$1/@v/$2.zip" || { echo "vendor: could not download $1@$2" >&2; exit 1; }
    mv -f "$zip.tmp" "$zip"
  fi
  echo "$zip"
}

echo "== Kubernetes $KUBERNETES_VERSION" >&2
zip=$(module_zip k8s.io/kubernetes "$KUBERNETES_VERSION")
unzip -o -q -j "$zip" "k8s.io/kubernetes@$KUBERNETES_VERSION/api/openapi-spec/swagger.json" -d "$CACHE/kubernetes-$KUBERNETES_VERSION"
rm -rf "$OUT/kubernetes-$KUBERNETES_VERSION"
"$PY" "$TOOLS/openapi2jsonschema.py" kubernetes "$CACHE/kubernetes-$KUBERNETES_VERSION/swagger.json" \
  "$OUT/kubernetes-$KUBERNETES_VERSION" "${KUBERNETES_KINDS[@]}"

echo "== Strimzi $STRIMZI_VERSION" >&2
crds="$CACHE/strimzi-$STRIMZI_VERSION"
mkdir -p "$crds"
mvn -B -q -Dstyle.color=never -f "$TOOLS/strimzi-crds.pom.xml" -Dstrimzi.version="$STRIMZI_VERSION" dependency:build-classpath \
  -Dmdep.outputFile="$crds/classpath.txt" >&2
args=()
for class in "${STRIMZI_CRDS[@]}"; do args+=("$class=$crds/${class##*.}.yaml"); done
# The arguments of Strimzi's api/pom.xml (execution generate-crd-co-install-v1).
"$JAVA_HOME/bin/java" -cp "$(cat "$crds/classpath.txt")" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml "${args[@]}" >&2
rm -rf "$OUT/strimzi-$STRIMZI_VERSION"
for class in "${STRIMZI_CRDS[@]}"; do
  "$PY" "$TOOLS/openapi2jsonschema.py" crd "$crds/${class##*.}.yaml" "$OUT/strimzi-$STRIMZI_VERSION"
done

echo "== Prometheus Operator $PROMETHEUS_OPERATOR_VERSION" >&2
module=github.com/prometheus-operator/prometheus-operator
zip=$(module_zip "$module" "$PROMETHEUS_OPERATOR_VERSION")
rm -rf "$OUT/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
for plural in "${PROMETHEUS_OPERATOR_CRDS[@]}"; do
  file="$module@$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd/monitoring.coreos.com_$plural.yaml"
  unzip -o -q -j "$zip" "$file" -d "$CACHE/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  "$PY" "$TOOLS/openapi2jsonschema.py" crd "$CACHE/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION/${file##*/}" \
    "$OUT/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
done
