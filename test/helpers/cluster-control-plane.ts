/**
 * The environment of a control plane in Kubernetes mode against a KubeApiFixture (the tests that run
 * `startClusterControlPlane` in-process): every port chosen by the OS, the CA files of `caDir`,
 * silent logs. `extra` adds or overrides variables.
 */
import { join } from 'node:path';

export function kubernetesModeEnv(o: {
  kubeconfig: string;
  caDir: string;
  host: string;
  podName: string;
  extra?: Readonly<Record<string, string>>;
}): Record<string, string> {
  return {
    CONFIG_SOURCE: 'kubernetes',
    KUBECONFIG: o.kubeconfig,
    POD_NAME: o.podName,
    POD_NAMESPACE: 'istio-system',
    CA_CERT_FILE: join(o.caDir, 'root-cert.pem'),
    CA_KEY_FILE: join(o.caDir, 'root-key.pem'),
    LISTEN_ADDRESS: o.host,
    CONTROL_PLANE_PORT: '0',
    ADMIN_PORT: '0',
    METRICS_PORT: '0',
    READINESS_PORT: '0',
    LOG_LEVEL: 'silent',
    WAYPOINT_IMAGE: 'registry.example/ambient-mesh:test',
    ...o.extra,
  };
}
