# The cluster's PKI and kubeconfigs, made with openssl under ${PKI} (sourced by cluster.sh).
# One CA signs everything; etcd listens on 127.0.0.1 only and speaks plain HTTP.

# cert NAME CN O KIND [SAN]: NAME.key + NAME.crt signed by the CA; KIND is client, server or both.
cert() {
  local name="$1" cn="$2" o="$3" kind="$4" san="${5:-}" subj="/CN=$2" eku ext
  [ -n "$o" ] && subj="/O=${o}${subj}"
  case "$kind" in
    client) eku="clientAuth" ;;
    server) eku="serverAuth" ;;
    both) eku="serverAuth,clientAuth" ;;
  esac
  ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${eku}"
  [ -n "$san" ] && ext+="
subjectAltName=${san}"
  openssl genrsa -out "${PKI}/${name}.key" 2048 2>/dev/null
  openssl req -new -key "${PKI}/${name}.key" -subj "$subj" -out "${PKI}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile <(printf '%s\n' "$ext") -out "${PKI}/${name}.crt" 2>/dev/null
  rm -f "${PKI}/${name}.csr"
}

# kubeconfig FILE USER CERTNAME: a kubeconfig with the CA and the client cert embedded.
kubeconfig() {
  local file="$1" user="$2" certname="$3"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ${AMC_NAME}
  cluster:
    server: https://${BRIDGE_IP}:${AMC_APISERVER_PORT}
    certificate-authority-data: $(base64 -w0 "${PKI}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 "${PKI}/${certname}.crt")
    client-key-data: $(base64 -w0 "${PKI}/${certname}.key")
contexts:
- name: ${user}@${AMC_NAME}
  context:
    cluster: ${AMC_NAME}
    user: ${user}
current-context: ${user}@${AMC_NAME}
EOF
  chmod 0600 "$file"
}

make_pki() {
  mkdir -p "${PKI}" && chmod 0700 "${PKI}"
  openssl genrsa -out "${PKI}/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "${PKI}/ca.key" -subj "/CN=${AMC_NAME}-kubernetes-ca" -days 365 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "${PKI}/ca.crt" 2>/dev/null
  local first_svc_ip="${AMC_SERVICE_CIDR%.*/*}.1"
  cert apiserver kube-apiserver "" server \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:${BRIDGE_IP},IP:${first_svc_ip}"
  # kubeadm's choice: the apiserver's client cert for kubelets is in system:masters, so the kubelets'
  # webhook authorisation allows exec, logs and port-forward.
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters client
  cert admin kubernetes-admin system:masters client
  cert controller-manager system:kube-controller-manager "" client
  cert scheduler system:kube-scheduler "" client
  cert kube-proxy system:kube-proxy "" client
  # The service-account signing key (tokens, projected tokens with audience istio-ca).
  openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  kubeconfig "${KUBECONFIG_ADMIN}" kubernetes-admin admin
  kubeconfig "${AMC_STATE}/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "${AMC_STATE}/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "${AMC_STATE}/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  local i n
  for ((i = 1; i <= AMC_NODES; i++)); do
    n=$(node_name "$i")
    # Node authorizer and NodeRestriction: the kubelet is system:node:<name> in system:nodes.
    cert "kubelet-${n}" "system:node:${n}" system:nodes client
    cert "kubelet-${n}-serving" "$n" "" server "DNS:${n},IP:$(node_ip "$i")"
    kubeconfig "${AMC_STATE}/kubelet-${n}.kubeconfig" "system:node:${n}" "kubelet-${n}"
  done
}
