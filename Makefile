# Image and deployment (deploy/README.md):
#
#   make docker-push deploy IMG=quay.io/you/syncsets:v1            # the embedded hub
#   make docker-push deploy IMG=… OVERLAY=scaled                    # API + controllers, PostgreSQL, RabbitMQ
#   make deploy IMG=… OVERLAY=openshift-hub KUBECTL=oc              # on OpenShift (oc new-project first)
#
# deploy applies deploy/overlays/$(OVERLAY) with the image set to $(IMG) and the namespace
# to $(NAMESPACE), then creates the Secrets it needs (deploy/secrets.sh: once, never
# replaced; SECRETS_ARGS, e.g. --san HOST, are passed on).

IMG ?= quay.io/syncsets/syncsets:$(shell git describe --always --dirty 2>/dev/null || echo dev)
OVERLAY ?= hub
NAMESPACE ?= syncsets
CONTAINER_TOOL ?= docker
KUBECTL ?= kubectl
SECRETS_ARGS ?=

.PHONY: docker-build docker-push deploy render check-deploy

docker-build:
	$(CONTAINER_TOOL) build -t $(IMG) .

docker-push: docker-build
	$(CONTAINER_TOOL) push $(IMG)

# The overlay with this image and namespace, as a kustomization under target/deploy.
render:
	@mkdir -p target/deploy
	@img='$(IMG)'; \
	case "$$img" in \
	*@*) name=$${img%@*}; ref="digest: $${img#*@}" ;; \
	*) case "$${img##*/}" in *:*) name=$${img%:*}; ref="newTag: \"$${img##*:}\"" ;; *) name=$$img; ref='newTag: latest' ;; esac ;; \
	esac; \
	printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	    'namespace: $(NAMESPACE)' 'resources:' '- ../../deploy/overlays/$(OVERLAY)' 'images:' \
	    '- name: quay.io/syncsets/syncsets' "  newName: $$name" "  $$ref" >target/deploy/kustomization.yaml
	@echo "target/deploy: deploy/overlays/$(OVERLAY), image $(IMG), namespace $(NAMESPACE)"

deploy: render
	$(KUBECTL) apply -k target/deploy
	KUBECTL=$(KUBECTL) deploy/secrets.sh --namespace $(NAMESPACE) --overlay $(OVERLAY) $(SECRETS_ARGS)

# What CI checks: the manifests (schemas, checkov, alerts) and the image's steps.
check-deploy:
	deploy/test/check-manifests.sh
	deploy/test/image-steps.sh debug
