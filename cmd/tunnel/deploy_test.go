package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The tests below check deploy/ as far as a machine without Docker or
// Kubernetes can: the Dockerfile's command line runs against the binary
// built the way the Dockerfile builds it, and the manifests parse and use
// only flags and variables the binary has, in a configuration it accepts.

// deployDir is deploy/, from this package's directory.
const deployDir = "../../deploy"

// dockerfile is what the tests read of deploy/Dockerfile.
type dockerfile struct {
	stages     []string // the FROM images, in order
	run        []string // RUN instructions, continuation lines joined
	user       string   // of the final stage
	env        []string // ENV of the final stage, as NAME=value
	entrypoint []string
	cmd        []string
}

// readDockerfile parses the instructions of deploy/Dockerfile that the
// tests look at. ENTRYPOINT and CMD must be in exec (JSON) form, so that
// the gateway is PID 1 and gets SIGTERM itself.
func readDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerfile{}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, args, _ := strings.Cut(line, " ")
		args = strings.TrimSpace(args)
		switch strings.ToUpper(instr) {
		case "FROM":
			image, _, _ := strings.Cut(args, " ")
			d.stages = append(d.stages, image)
			d.user, d.env = "", nil
		case "RUN":
			d.run = append(d.run, args)
		case "USER":
			d.user = args
		case "ENV":
			d.env = append(d.env, args)
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(args), &v); err != nil {
				t.Fatalf("Dockerfile %s is not in exec form (a JSON array): %s", instr, args)
			}
			if strings.ToUpper(instr) == "CMD" {
				d.cmd = v
			} else {
				d.entrypoint = v
			}
		}
	}
	return d
}

// buildCommand builds this command and returns the binary's path. It is built
// as the test binary was (-race or not, the same workspace), so that every
// package comes from the build cache: a build like the Dockerfile's
// (CGO_ENABLED=0, -trimpath) would compile the AWS SDK anew, for minutes.
func buildCommand(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tunnel")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDockerfile checks the image's build and its command line: a static
// binary of cmd/tunnel (CGO_ENABLED=0), a distroless or scratch final
// stage, a user that is not root, and an ENTRYPOINT and CMD that start a
// gateway which answers /healthz, logs JSON and stops cleanly on SIGTERM.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	d := readDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile has %d stages; want a build stage and a final one", len(d.stages))
	}
	if final := d.stages[len(d.stages)-1]; final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s; want scratch or gcr.io/distroless/static", final)
	}
	if u, _, _ := strings.Cut(d.user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("final stage USER %q; want a non-root user", d.user)
	}
	goBuild := slices.IndexFunc(d.run, func(r string) bool { return strings.Contains(r, "go build") })
	if goBuild < 0 || !strings.Contains(d.run[goBuild], "CGO_ENABLED=0") || !strings.Contains(d.run[goBuild], "cd cmd/tunnel") {
		t.Errorf("no RUN builds cmd/tunnel with CGO_ENABLED=0: %q", d.run)
	}
	if len(d.entrypoint) != 1 || len(d.cmd) == 0 || d.cmd[0] != "gateway" {
		t.Fatalf("ENTRYPOINT %q, CMD %q; want the binary, then gateway and its flags", d.entrypoint, d.cmd)
	}

	bin := buildCommand(t)
	// The image's command line, with listeners on free loopback ports (a
	// later flag wins), and the tokens the image needs from its runner.
	args := append(slices.Clone(d.cmd[1:]), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	cmd := exec.Command(bin, append([]string{d.cmd[0]}, args...)...)
	cmd.Env = append(slices.Clone(d.env), "TUNNEL_TOKENS=docker-test-token")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr output
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range lines {
		}
		<-exited
	})
	admin := ""
	for admin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the gateway exited; stderr:\n%s", &stderr)
			}
			// "admin listening on 127.0.0.1:PORT: /metrics, ..."
			if rest, ok := strings.CutPrefix(l, "admin listening on "); ok {
				admin, _, _ = strings.Cut(rest, ": ")
			}
		case <-time.After(waitTimeout):
			t.Fatalf("the gateway did not start; stderr:\n%s", &stderr)
		}
	}
	if status, body := get(t, "http://"+admin+"/healthz"); status != http.StatusOK || body != "ok" {
		t.Errorf("GET /healthz = %d %q; want 200 ok", status, body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("after SIGTERM: %v; want exit status 0; stderr:\n%s", err, &stderr)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the gateway did not stop on SIGTERM")
	}
	for line := range strings.Lines(stderr.String()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("the image's gateway logs %q; its CMD asks for JSON", line)
		}
	}

	// Without tokens, the image's default refuses to start, and says why.
	out, err := exec.Command(bin, d.cmd...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "no agent tokens") {
		t.Errorf("the image's command without tokens: %v\n%s\nwant exit status 2 and a message about tokens", err, out)
	}
}

// manifest is the part of a Kubernetes object the tests read; fields that
// do not apply to an object's kind stay empty.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas    *int                       `yaml:"replicas"`
		ServiceName string                     `yaml:"serviceName"`
		ClusterIP   string                     `yaml:"clusterIP"`
		Selector    map[string]any             `yaml:"selector"`
		Template    podTemplate                `yaml:"template"`
		Ports       []servicePort              `yaml:"ports"`
		Rules       []ingressRule              `yaml:"rules"`
		TLS         []struct{ Hosts []string } `yaml:"tls"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
	} `yaml:"spec"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
}

type servicePort struct {
	Name       string    `yaml:"name"`
	Port       int       `yaml:"port"`
	TargetPort yaml.Node `yaml:"targetPort"`
}

type ingressRule struct {
	Host string `yaml:"host"`
	HTTP struct {
		Paths []struct {
			Backend struct {
				Service struct {
					Name string `yaml:"name"`
					Port struct {
						Name   string `yaml:"name"`
						Number int    `yaml:"number"`
					} `yaml:"port"`
				} `yaml:"service"`
			} `yaml:"backend"`
		} `yaml:"paths"`
	} `yaml:"http"`
}

// readManifests parses every document of deploy/kubernetes/*.yaml, keyed
// by kind and name ("Deployment/tunnel-gateway").
func readManifests(t *testing.T) map[string]*manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	objects := map[string]*manifest{}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for {
			m := &manifest{}
			err := dec.Decode(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if filepath.Base(file) == "kustomization.yaml" {
				continue
			}
			if m.Kind == "" || m.Metadata.Name == "" {
				t.Fatalf("%s: an object without kind or name", file)
			}
			objects[m.Kind+"/"+m.Metadata.Name] = m
		}
		f.Close()
	}
	return objects
}

// envRead are the variables the gateway reads, besides those of the
// OpenTelemetry SDK (OTEL_*) and the AWS SDK (AWS_*).
var envRead = []string{envTokens, envNodeSecret, envJWTSecret}

// TestKubernetesManifests checks deploy/kubernetes against the binary:
// the gateway's container arguments, with the variables Kubernetes
// expands in them, are a command line the gateway accepts, for several
// nodes on the Redis of the manifests; every variable is one the binary
// or the arguments read; the Secret has the keys the Deployment takes;
// readiness is /healthz on the admin port; the Service and the Ingress
// (the domain and its wildcard) reach the container's port.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	objects := readManifests(t)
	get := func(key string) *manifest {
		t.Helper()
		m := objects[key]
		if m == nil {
			t.Fatalf("no %s in deploy/kubernetes", key)
		}
		return m
	}
	deploy := get("Deployment/tunnel-gateway")
	if deploy.Spec.Replicas == nil || *deploy.Spec.Replicas < 2 {
		t.Errorf("replicas %v; want several nodes", deploy.Spec.Replicas)
	}
	pod := deploy.Spec.Template
	if !pod.Spec.SecurityContext.RunAsNonRoot {
		t.Error("the gateway's pod may run as root")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers; want the gateway alone", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "gateway" {
		t.Fatalf("args %q; want the gateway subcommand (the image's ENTRYPOINT is the binary)", c.Args)
	}

	// The environment the container gets, with stand-ins for the pod IP
	// and the Secret's values.
	const podIP = "10.1.2.3"
	secret := get("Secret/tunnel-secrets")
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom.FieldRef != nil:
			if e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
				t.Errorf("env %s from field %s; want status.podIP", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = podIP
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := get("Secret/" + ref.Name).StringData[ref.Key]
			if !ok {
				t.Errorf("env %s from key %q of Secret %s, which has no such key", e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = v
		default:
			env[e.Name] = e.Value
		}
	}
	if len(secret.StringData) == 0 {
		t.Error("Secret tunnel-secrets has no keys")
	}

	// Kubernetes expands $(NAME) in args from the container's env.
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	expanded := map[string]bool{}
	args := make([]string, len(c.Args)-1)
	for i, a := range c.Args[1:] {
		args[i] = ref.ReplaceAllStringFunc(a, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("args refer to $(%s), which the container's env does not set", name)
			}
			expanded[name] = true
			return v
		})
	}
	for name := range env {
		if !expanded[name] && !slices.Contains(envRead, name) && !strings.HasPrefix(name, "OTEL_") && !strings.HasPrefix(name, "AWS_") {
			t.Errorf("env %s is read neither by the gateway nor by its args", name)
		}
	}

	var usage strings.Builder
	cfg, err := parseGatewayFlags(args, envMap(env), &usage)
	if err != nil {
		t.Fatalf("the gateway refuses the Deployment's args %q: %v\n%s", args, err, usage.String())
	}
	if cfg.store != "redis" || cfg.auth.insecureNoAuth || cfg.auth.tokenCount == 0 || cfg.nodeSecret == "" {
		t.Errorf("store %q, tokens %d, node secret set %v; want the shared store, tokens and the node secret", cfg.store, cfg.auth.tokenCount, cfg.nodeSecret != "")
	}

	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	port := func(addr string) int {
		_, p, err := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		if err != nil || n == 0 {
			t.Fatalf("address %q has no port", addr)
		}
		return n
	}
	if ports["http"] != port(cfg.listen) || ports["admin"] != port(cfg.adminListen) {
		t.Errorf("container ports %v; want http at --listen %s and admin at --admin-listen %s", ports, cfg.listen, cfg.adminListen)
	}
	if want := "http://" + podIP + ":" + strconv.Itoa(ports["http"]); cfg.nodeURL != want {
		t.Errorf("--node-url %q; want %q: the pod IP and the port the other nodes reach", cfg.nodeURL, want)
	}
	if grace := time.Duration(pod.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= cfg.shutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v; want more than --shutdown-timeout %v", grace, cfg.shutdownTimeout)
	}
	probe := c.ReadinessProbe.HTTPGet
	if probe.Path != "/healthz" || resolvePort(probe.Port, ports) != ports["admin"] {
		t.Errorf("readiness probe %s on port %q; want /healthz on the admin port", probe.Path, probe.Port.Value)
	}

	// Redis: the address the nodes use is a Service of the manifests,
	// governing the StatefulSet.
	redisHost, redisPort, _ := net.SplitHostPort(cfg.redisAddr)
	redisSvc := get("Service/" + redisHost)
	if n, _ := strconv.Atoi(redisPort); !slices.ContainsFunc(redisSvc.Spec.Ports, func(p servicePort) bool { return p.Port == n }) {
		t.Errorf("Service %s has no port %s", redisHost, redisPort)
	}
	if sts := get("StatefulSet/redis"); sts.Spec.ServiceName != redisHost || !selects(redisSvc.Spec.Selector, sts.Spec.Template.Metadata.Labels) {
		t.Errorf("StatefulSet redis: serviceName %q, labels %v; want Service %s to govern and select it", sts.Spec.ServiceName, sts.Spec.Template.Metadata.Labels, redisHost)
	}

	// The Service reaches the gateway's port; the Ingress sends the domain
	// and every subdomain to the Service.
	svc := get("Service/tunnel-gateway")
	if !selects(svc.Spec.Selector, pod.Metadata.Labels) {
		t.Errorf("Service tunnel-gateway selects %v; the pods are %v", svc.Spec.Selector, pod.Metadata.Labels)
	}
	if len(svc.Spec.Ports) != 1 || resolvePort(svc.Spec.Ports[0].TargetPort, ports) != ports["http"] {
		t.Errorf("Service tunnel-gateway ports %+v; want one, to the container's http port", svc.Spec.Ports)
	}
	ing := get("Ingress/tunnel-gateway")
	domain := cfg.publicDomain()
	hosts := map[string]bool{}
	for _, r := range ing.Spec.Rules {
		hosts[r.Host] = true
		for _, p := range r.HTTP.Paths {
			b := p.Backend.Service
			if b.Name != "tunnel-gateway" || (b.Port.Name != svc.Spec.Ports[0].Name && b.Port.Number != svc.Spec.Ports[0].Port) {
				t.Errorf("Ingress rule %s goes to %+v; want the Service tunnel-gateway's port", r.Host, b)
			}
		}
	}
	if !hosts[domain] || !hosts["*."+domain] || len(hosts) != 2 {
		t.Errorf("Ingress hosts %v; want %s and *.%s, the domain of --base-url", hosts, domain, domain)
	}
	if len(ing.Spec.TLS) != 1 || !slices.Contains(ing.Spec.TLS[0].Hosts, domain) || !slices.Contains(ing.Spec.TLS[0].Hosts, "*."+domain) {
		t.Errorf("Ingress TLS %+v; want one certificate for %s and *.%s", ing.Spec.TLS, domain, domain)
	}
	if !cfg.trustProxy || !strings.HasPrefix(cfg.baseURL, "https://") {
		t.Errorf("behind the Ingress: --trust-proxy %v, --base-url %q; want the proxy trusted and https URLs", cfg.trustProxy, cfg.baseURL)
	}
}

// selects reports whether a Service's selector matches labels.
func selects(selector map[string]any, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	if ml, ok := selector["matchLabels"].(map[string]any); ok {
		selector = ml
	}
	for k, v := range selector {
		if s, ok := v.(string); !ok || labels[k] != s {
			return false
		}
	}
	return true
}

// resolvePort returns the number a port reference (a name or a number)
// stands for among a container's named ports.
func resolvePort(n yaml.Node, named map[string]int) int {
	if v, err := strconv.Atoi(n.Value); err == nil {
		return v
	}
	return named[n.Value]
}
