/**
 * WAYPOINT_RESOURCES: the requests and limits the control plane writes into waypoint Deployments,
 * refused at start-up when the API server would refuse every Deployment written with them.
 */
import t from 'tap';
import { DEFAULT_WAYPOINT_RESOURCES, parseContainerResources, quantityValue } from '../../../control-plane/kubernetes/resources.js';

const parse = (text: string) => {
  const problems: string[] = [];
  const value = parseContainerResources('WAYPOINT_RESOURCES', text, problems);
  return { value, problems };
};

t.test('quantities as Kubernetes writes them', async (t) => {
  t.equal(quantityValue('100m'), 0.1);
  t.equal(quantityValue('2'), 2);
  t.equal(quantityValue('1.5'), 1.5);
  t.equal(quantityValue('128Mi'), 128 * 2 ** 20);
  t.equal(quantityValue('1Gi'), 2 ** 30);
  t.equal(quantityValue('1G'), 1e9);
  t.equal(quantityValue('1e3'), 1000);
  for (const bad of ['', '-1', '1 Gi', '1gb', 'Mi', '1.2.3', 'lots']) t.equal(quantityValue(bad), undefined, `${JSON.stringify(bad)} is not a quantity`);
});

t.test('a good value is kept as given; numbers become quantities; {} means none', async (t) => {
  t.same(parse('{"requests":{"cpu":"250m","memory":"256Mi"},"limits":{"cpu":2,"memory":"2Gi"}}'), {
    value: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '2', memory: '2Gi' } },
    problems: [],
  });
  t.same(parse('{}'), { value: {}, problems: [] });
  t.same(parse('{"limits":{"memory":"1Gi"}}'), { value: { limits: { memory: '1Gi' } }, problems: [] }, 'a limit alone (the request defaults to it)');
  t.ok(Object.isFrozen(parse('{"requests":{"cpu":"1"}}').value));
});

t.test('every problem is reported, and the defaults stand in', async (t) => {
  const r = parse('{"requests":{"cpu":"fast","memory":"2Gi"},"limits":{"memory":"1Gi"},"claims":[]}');
  t.same(r.value, DEFAULT_WAYPOINT_RESOURCES);
  t.match(r.problems, [
    /^WAYPOINT_RESOURCES: requests\.cpu="fast" is not a Kubernetes quantity/,
    /^WAYPOINT_RESOURCES: "claims" is not one of requests, limits$/,
    /^WAYPOINT_RESOURCES: requests\.memory \(2Gi\) is above limits\.memory \(1Gi\); the api server would refuse every waypoint deployment$/,
  ]);
  t.equal(r.problems.length, 3, 'and nothing else');
  t.match(parse('cpu=100m').problems, [/^WAYPOINT_RESOURCES is not JSON/]);
  t.match(parse('[]').problems, [/^WAYPOINT_RESOURCES must be a JSON object with "requests" and\/or "limits"$/]);
  t.match(parse('{"requests":"100m"}').problems, [/^WAYPOINT_RESOURCES: requests must be an object of resource name to quantity$/]);
  t.match(parse('{"requests":{"CPU Count":"1"}}').problems, [/requests\.CPU Count is not a resource name/]);
  t.same(parse('{"requests":{"memory":"1Gi"},"limits":{"memory":"1024Mi"}}').problems, [], 'equal in other units is not above');
});
