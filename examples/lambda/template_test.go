package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/serverless"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// The tests below check template.yaml, the SAM template of the function,
// against the code: the environment variables that serverless.FromEnv and
// serverless.TracerProviderFromEnv read, the timeouts of package
// serverless, the tables, keys and index of dynamostore and dynamolimit,
// the DynamoDB calls they make, the scheduled event Handler.Invoke
// recognises, and the metric names of package observability in the
// namespace of serverless.EMFNamespace.

// envNotInTemplate are the variables the function reads that the template
// must not set: Lambda sets the first four itself (they are reserved), the
// endpoint overrides are for local development only, and so are the
// plaintext tokens of TUNNEL_TOKENS: the template takes them from a secret.
var envNotInTemplate = []string{
	"AWS_REGION",
	"AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN",
	"TUNNEL_DYNAMODB_ENDPOINT",
	"TUNNEL_SECRETSMANAGER_ENDPOINT",
	"TUNNEL_SSM_ENDPOINT",
	"TUNNEL_TOKENS",
	"TUNNEL_S3_ENDPOINT",
}

// envElsewhere are the variables the function reads that name what the
// template does otherwise: the tokens in a Parameter Store parameter
// rather than a secret, and an HMAC secret for JWTs (the template offers
// a JWK set URL). A template of your own may set them; this one does not.
var envElsewhere = []string{
	"TUNNEL_TOKENS_PARAMETER",
	"TUNNEL_JWT_SECRET_ARN",
	"TUNNEL_JWT_SECRET_PARAMETER",
}

// envExclusive are variables that FromEnv refuses beside others (a secret
// named twice); envReads leaves them empty, so that every other one can be
// set together.
var envExclusive = append([]string{"TUNNEL_TOKENS"}, envElsewhere...)

// envOptionalPrefix starts the OpenTelemetry SDK's own variables, which
// the function may read and which belong to the collector layer that a
// deployment adds for tracing, not to the template.
const envOptionalPrefix = "OTEL_"

// adminOps are DynamoDB calls that only CreateTables and CreateTable make
// (development and tests); the deployed function never does.
var adminOps = map[string]bool{
	"CreateTable":        true,
	"DescribeTable":      true,
	"DeleteTable":        true,
	"DescribeTimeToLive": true,
	"UpdateTimeToLive":   true,
}

// serverlessDir holds package serverless, the adapter this command runs.
var serverlessDir = filepath.Join("..", "..", "serverless")

// cfnTemplate is template.yaml, parsed.
type cfnTemplate struct {
	root *yaml.Node // the top-level mapping
}

func loadTemplate(t *testing.T) cfnTemplate {
	t.Helper()
	b, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatal("template.yaml is not one mapping")
	}
	return cfnTemplate{root: doc.Content[0]}
}

// get follows a path of mapping keys from n; nil when any is missing.
func get(n *yaml.Node, path ...string) *yaml.Node {
	for _, key := range path {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return n
}

// keys lists the keys of mapping n.
func keys(n *yaml.Node) []string {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var ks []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		ks = append(ks, n.Content[i].Value)
	}
	return ks
}

// text is a scalar as a string, a short-form intrinsic included: "!Ref X"
// for a tagged scalar, the plain value otherwise. Anything else is "".
func text(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return n.Tag + " " + n.Value
	}
	return n.Value
}

// list is the elements of sequence n, or n alone when it is a scalar (as
// IAM's Action and Resource may be).
func list(n *yaml.Node) []*yaml.Node {
	switch {
	case n == nil:
		return nil
	case n.Kind == yaml.SequenceNode:
		return n.Content
	default:
		return []*yaml.Node{n}
	}
}

func (c cfnTemplate) resource(t *testing.T, name, typ string) *yaml.Node {
	t.Helper()
	r := get(c.root, "Resources", name)
	if r == nil {
		t.Fatalf("template has no resource %s", name)
	}
	if got := text(get(r, "Type")); got != typ {
		t.Fatalf("resource %s has type %q, want %q", name, got, typ)
	}
	return get(r, "Properties")
}

// resourcesOfType lists the names of the resources of type typ.
func (c cfnTemplate) resourcesOfType(typ string) []string {
	var names []string
	res := get(c.root, "Resources")
	for _, name := range keys(res) {
		if text(get(res, name, "Type")) == typ {
			names = append(names, name)
		}
	}
	return names
}

// function returns TunnelFunction, the agent-side function, which has
// every grant and variable; PublicFunction's are checked against it.
func (c cfnTemplate) function(t *testing.T) *yaml.Node {
	t.Helper()
	fns := c.resourcesOfType("AWS::Serverless::Function")
	sort.Strings(fns)
	if !slices.Equal(fns, []string{"PublicFunction", "TunnelFunction"}) {
		t.Fatalf("functions %v, want [PublicFunction TunnelFunction]", fns)
	}
	return c.resource(t, "TunnelFunction", "AWS::Serverless::Function")
}

// parseGo parses the non-test Go files of dir.
func parseGo(t *testing.T, dir string) []*ast.File {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// stringLit is the value of a string literal expression.
func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// envReads lists the variables the function reads: those that
// serverless.FromEnv and serverless.TracerProviderFromEnv, which main
// calls with os.Getenv, ask for when every optional part is turned on
// (every variable has a value but the envExclusive ones, and TUNNEL_XRAY
// is 1). Neither makes a network call.
func envReads(t *testing.T) map[string]bool {
	t.Helper()
	vars := make(map[string]bool)
	getenv := func(name string) string {
		vars[name] = true
		switch name {
		case "TUNNEL_XRAY":
			return "1"
		case "TUNNEL_UNLISTED_NAMES":
			return "generated"
		case "AWS_REGION":
			return "eu-west-1"
		case "TUNNEL_MANAGEMENT_ENDPOINT", "TUNNEL_BASE_URL", "TUNNEL_DYNAMODB_ENDPOINT":
			return "https://example.com"
		}
		if slices.Contains(envExclusive, name) {
			return ""
		}
		return "set"
	}
	if _, err := serverless.FromEnv(getenv, nil); err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	tp, err := serverless.TracerProviderFromEnv(t.Context(), getenv)
	if err != nil || tp == nil {
		t.Fatalf("TracerProviderFromEnv: %v, %v", tp, err)
	}
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatalf("tracer provider shutdown: %v", err)
	}
	return vars
}

// stringConsts is every string constant declared in the non-test files of
// dir, by name.
func stringConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	consts := make(map[string]string)
	for _, f := range parseGo(t, dir) {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[name.Name] = s
						}
					}
				}
			}
		}
	}
	return consts
}

// clientOps lists, as IAM actions, the DynamoDB operations the non-test
// files of dir call through a field named client (s.client.GetItem(...)),
// table administration left out.
func clientOps(t *testing.T, dir string) []string {
	t.Helper()
	return callOps(t, dir, "client", "", "dynamodb:")
}

// callOps lists, as IAM actions (prefix and operation), the operations the
// non-test files of dir call through a field named field
// (x.field.Op(...)), table administration left out; with pkg, only the
// calls whose input is a literal of that package (&pkg.OpInput{...}), so
// that the clients of several services in one file are told apart.
func callOps(t *testing.T, dir, field, pkg, prefix string) []string {
	t.Helper()
	set := make(map[string]bool)
	for _, f := range parseGo(t, dir) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, ok := sel.X.(*ast.SelectorExpr)
			if ok && recv.Sel.Name == field && !adminOps[sel.Sel.Name] && (pkg == "" || inputOf(call, pkg)) {
				set[prefix+sel.Sel.Name] = true
			}
			return true
		})
	}
	ops := make([]string, 0, len(set))
	for op := range set {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	if len(ops) == 0 {
		t.Fatalf("found no %s calls in %s", prefix, dir)
	}
	return ops
}

// inputOf reports whether one of call's arguments is &pkg.T{...}.
func inputOf(call *ast.CallExpr, pkg string) bool {
	for _, a := range call.Args {
		u, ok := a.(*ast.UnaryExpr)
		if !ok {
			continue
		}
		lit, ok := u.X.(*ast.CompositeLit)
		if !ok {
			continue
		}
		if typ, ok := lit.Type.(*ast.SelectorExpr); ok {
			if id, ok := typ.X.(*ast.Ident); ok && id.Name == pkg {
				return true
			}
		}
	}
	return false
}

func TestTemplateFunction(t *testing.T) {
	c := loadTemplate(t)
	if got := text(get(c.root, "Transform")); got != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform %q", got)
	}
	fn := c.function(t)
	for key, want := range map[string]string{
		"Handler":    "bootstrap",
		"Runtime":    "provided.al2023",
		"Timeout":    "30",
		"MemorySize": "256",
	} {
		if got := text(get(fn, key)); got != want {
			t.Errorf("function %s = %q, want %q", key, got, want)
		}
	}
	if archs := list(get(fn, "Architectures")); len(archs) != 1 || text(archs[0]) != "arm64" {
		t.Errorf("function Architectures, want [arm64]")
	}
	if text(get(fn, "CodeUri")) == "" {
		t.Error("function has no CodeUri")
	}

	// The function gives up on an agent after Relay's response timeout,
	// which must end before API Gateway's integration timeout and the
	// function's own: the client gets the 504 of the error model, not API
	// Gateway's.
	wait := serverless.DefaultResponseTimeout
	if s, err := strconv.Atoi(text(get(fn, "Timeout"))); err != nil || time.Duration(s)*time.Second <= wait {
		t.Errorf("function Timeout %q s, want more than the response timeout %v", text(get(fn, "Timeout")), wait)
	}
	integ := c.resource(t, "HttpIntegration", "AWS::ApiGatewayV2::Integration")
	if ms, err := strconv.Atoi(text(get(integ, "TimeoutInMillis"))); err != nil || time.Duration(ms)*time.Millisecond <= wait {
		t.Errorf("HTTP integration TimeoutInMillis %q, want more than the response timeout %v", text(get(integ, "TimeoutInMillis")), wait)
	}
}

func TestTemplateEnvironment(t *testing.T) {
	c := loadTemplate(t)
	env := get(c.function(t), "Environment", "Variables")
	if env == nil {
		t.Fatal("function has no Environment Variables")
	}
	reads := envReads(t)
	set := make(map[string]bool)
	for _, name := range keys(env) {
		set[name] = true
		if !reads[name] {
			t.Errorf("template sets %s, which the function does not read", name)
		}
	}
	for _, name := range envNotInTemplate {
		if !reads[name] {
			t.Errorf("the function no longer reads %s; update envNotInTemplate", name)
		}
		if set[name] {
			t.Errorf("template sets %s, which it must leave to Lambda or to local development", name)
		}
	}
	for _, name := range envElsewhere {
		if !reads[name] {
			t.Errorf("the function no longer reads %s; update envElsewhere", name)
		}
	}
	for name := range reads {
		if !set[name] && !slices.Contains(envNotInTemplate, name) && !slices.Contains(envElsewhere, name) && !strings.HasPrefix(name, envOptionalPrefix) {
			t.Errorf("the function reads %s, which the template does not set", name)
		}
	}

	for name, want := range map[string]string{
		"TUNNEL_CONNECTIONS_TABLE":   "!Ref ConnectionsTable",
		"TUNNEL_PENDING_TABLE":       "!Ref PendingTable",
		"TUNNEL_RATELIMIT_TABLE":     "!Ref RateLimitTable",
		"TUNNEL_TUNNEL_INDEX":        dynamostore.DefaultTunnelIndex,
		"TUNNEL_BASE_URL":            "!GetAtt HttpApi.ApiEndpoint",
		"TUNNEL_TOKENS_SECRET_ARN":   "!Ref AgentTokensSecretArn",
		"TUNNEL_UNLISTED_NAMES":      "!Ref UnlistedNames",
		"TUNNEL_JWT_JWKS_URL":        "!Ref JwtJwksUrl",
		"TUNNEL_JWT_ISSUER":          "!Ref JwtIssuer",
		"TUNNEL_JWT_AUDIENCE":        "!Ref JwtAudience",
		"TUNNEL_DOMAIN":              "!Ref TunnelDomain",
		"TUNNEL_BODY_BUCKET":         "!Ref BodyBucket",
		"TUNNEL_MANAGEMENT_ENDPOINT": "!Sub https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}",
	} {
		if got := text(get(env, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got, want := text(get(c.root, "Outputs", "ManagementEndpoint", "Value")), text(get(env, "TUNNEL_MANAGEMENT_ENDPOINT")); got != want {
		t.Errorf("output ManagementEndpoint %q, want %q", got, want)
	}
}

// keySchema checks that table's key is the single partition key attr of
// type S, and returns its attribute definitions.
func keySchema(t *testing.T, name string, props *yaml.Node, attr string) map[string]string {
	t.Helper()
	ks := list(get(props, "KeySchema"))
	if len(ks) != 1 || text(get(ks[0], "AttributeName")) != attr || text(get(ks[0], "KeyType")) != "HASH" {
		t.Errorf("%s: key schema is not the partition key %q alone", name, attr)
	}
	defs := make(map[string]string)
	for _, d := range list(get(props, "AttributeDefinitions")) {
		defs[text(get(d, "AttributeName"))] = text(get(d, "AttributeType"))
	}
	if defs[attr] != "S" {
		t.Errorf("%s: attribute %q is not defined as S (definitions %v)", name, attr, defs)
	}
	if got := text(get(props, "BillingMode")); got != "PAY_PER_REQUEST" {
		t.Errorf("%s: BillingMode %q, want PAY_PER_REQUEST", name, got)
	}
	return defs
}

func checkTTL(t *testing.T, name string, props *yaml.Node, attr string) {
	t.Helper()
	ttl := get(props, "TimeToLiveSpecification")
	if text(get(ttl, "AttributeName")) != attr || text(get(ttl, "Enabled")) != "true" {
		t.Errorf("%s: TTL is not enabled on %q", name, attr)
	}
}

func TestTemplateTables(t *testing.T) {
	c := loadTemplate(t)
	attrs := stringConsts(t, filepath.Join("..", "..", "store", "dynamostore"))
	attr := func(name string) string {
		s, ok := attrs[name]
		if !ok {
			t.Fatalf("dynamostore has no constant %s", name)
		}
		return s
	}
	connID, tunnelID, requestID, ttl := attr("attrConnectionID"), attr("attrTunnelID"), attr("attrRequestID"), attr("attrTTL")

	conn := c.resource(t, "ConnectionsTable", "AWS::DynamoDB::Table")
	if got := text(get(conn, "TableName")); !strings.HasPrefix(got, "!Sub "+dynamostore.DefaultConnectionsTable+"-${AWS::StackName}") {
		t.Errorf("ConnectionsTable name %q does not start with %q", got, dynamostore.DefaultConnectionsTable)
	}
	defs := keySchema(t, "ConnectionsTable", conn, connID)
	if defs[tunnelID] != "S" || len(defs) != 2 {
		t.Errorf("ConnectionsTable: attribute definitions %v, want %s and %s, both S", defs, connID, tunnelID)
	}
	gsis := list(get(conn, "GlobalSecondaryIndexes"))
	if len(gsis) != 1 {
		t.Fatalf("ConnectionsTable has %d global secondary indexes, want 1", len(gsis))
	}
	gsi := gsis[0]
	if got := text(get(gsi, "IndexName")); got != dynamostore.DefaultTunnelIndex {
		t.Errorf("index name %q, want %q", got, dynamostore.DefaultTunnelIndex)
	}
	if ks := list(get(gsi, "KeySchema")); len(ks) != 1 || text(get(ks[0], "AttributeName")) != tunnelID || text(get(ks[0], "KeyType")) != "HASH" {
		t.Errorf("index key is not %q alone", tunnelID)
	}
	if got := text(get(gsi, "Projection", "ProjectionType")); got != "ALL" {
		t.Errorf("index projection %q, want ALL", got)
	}
	checkTTL(t, "ConnectionsTable", conn, ttl)

	pending := c.resource(t, "PendingTable", "AWS::DynamoDB::Table")
	if got := text(get(pending, "TableName")); !strings.HasPrefix(got, "!Sub "+dynamostore.DefaultPendingTable+"-${AWS::StackName}") {
		t.Errorf("PendingTable name %q does not start with %q", got, dynamostore.DefaultPendingTable)
	}
	if defs := keySchema(t, "PendingTable", pending, requestID); len(defs) != 1 {
		t.Errorf("PendingTable: attribute definitions %v, want %s alone", defs, requestID)
	}
	checkTTL(t, "PendingTable", pending, ttl)

	limits := c.resource(t, "RateLimitTable", "AWS::DynamoDB::Table")
	if defs := keySchema(t, "RateLimitTable", limits, dynamolimit.KeyAttribute); len(defs) != 1 {
		t.Errorf("RateLimitTable: attribute definitions %v, want %s alone", defs, dynamolimit.KeyAttribute)
	}
	if dynamolimit.CountAttribute == dynamolimit.KeyAttribute {
		t.Error("dynamolimit's count attribute is its key")
	}
	checkTTL(t, "RateLimitTable", limits, dynamolimit.TTLAttribute)

	if tables := c.resourcesOfType("AWS::DynamoDB::Table"); len(tables) != 3 {
		t.Errorf("tables %v, want ConnectionsTable, PendingTable and RateLimitTable", tables)
	}
}

func TestTemplatePermissions(t *testing.T) {
	c := loadTemplate(t)
	storeOps := clientOps(t, filepath.Join("..", "..", "store", "dynamostore"))
	limitOps := clientOps(t, filepath.Join("..", "..", "ratelimit", "dynamolimit"))
	for _, op := range []string{"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:PutItem"} {
		if !slices.Contains(storeOps, op) {
			t.Fatalf("dynamostore calls %v, without %s", storeOps, op)
		}
	}

	// The serverless package's own calls: its identity rows in the
	// connections table, and the agent tokens' secret.
	identityOps := callOps(t, serverlessDir, "Client", "dynamodb", "dynamodb:")
	secretOps := callOps(t, serverlessDir, "Client", "secretsmanager", "secretsmanager:")
	s3Ops := callOps(t, serverlessDir, "Client", "s3", "s3:")

	// The body bucket's objects: every key, and nothing else.
	const bodyObjects = "!Sub ${BodyBucket.Arn}/*"

	// Granted actions by resource, over both functions (each side is
	// granted its own part: TestTemplateLoad), and the conditions of
	// statements.
	granted := make(map[string][]string)
	conditions := make(map[string]*yaml.Node)
	var policies []*yaml.Node
	for _, fn := range []*yaml.Node{c.function(t), c.resource(t, "PublicFunction", "AWS::Serverless::Function")} {
		p := list(get(fn, "Policies"))
		if len(p) == 0 {
			t.Fatal("a function has no Policies")
		}
		policies = append(policies, p...)
	}
	for _, p := range policies {
		if p.Kind != yaml.MappingNode {
			t.Errorf("policy %q: only inline policy documents keep the grants exact", text(p))
			continue
		}
		for _, st := range list(get(p, "Statement")) {
			if st.Tag == "!If" {
				// A statement of a condition: [condition, statement, !Ref AWS::NoValue].
				if len(st.Content) != 3 || get(c.root, "Conditions", text(st.Content[0])) == nil || text(st.Content[2]) != "!Ref AWS::NoValue" {
					t.Errorf("line %d: a conditional statement is not !If [condition, statement, !Ref AWS::NoValue]", st.Line)
					continue
				}
				st = st.Content[1]
			}
			if cond := get(st, "Condition"); cond != nil {
				conditions[text(get(st, "Sid"))] = cond
			}
			if text(get(st, "Effect")) != "Allow" {
				t.Errorf("statement %s is not Allow", text(get(st, "Sid")))
			}
			for _, r := range list(get(st, "Resource")) {
				res := text(r)
				if res == "" || strings.Contains(res, "*") && !strings.Contains(res, "@connections/*") && res != bodyObjects {
					t.Errorf("statement %s: resource %q is not exact", text(get(st, "Sid")), res)
				}
				for _, a := range list(get(st, "Action")) {
					if strings.Contains(text(a), "*") {
						t.Errorf("statement %s: wildcard action %q", text(get(st, "Sid")), text(a))
					}
					granted[res] = append(granted[res], text(a))
				}
			}
		}
	}

	mgmt := "!Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${StageName}/POST/@connections/*"
	mgmtGet := "!Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${StageName}/GET/@connections/*"
	want := map[string][]string{
		"!GetAtt ConnectionsTable.Arn": storeOps,
		"!GetAtt PendingTable.Arn":     storeOps,
		"!Sub ${ConnectionsTable.Arn}/index/" + dynamostore.DefaultTunnelIndex: {"dynamodb:Query"},
		"!GetAtt RateLimitTable.Arn": limitOps,
		mgmt:                         {"execute-api:ManageConnections"},
		mgmtGet:                      {"execute-api:ManageConnections"},
		"!Ref AgentTokensSecretArn":  secretOps,
		"!Ref AgentTokensKmsKeyArn":  {"kms:Decrypt"},
		bodyObjects:                  s3Ops,
	}
	if !slices.Equal(s3Ops, []string{"s3:GetObject", "s3:PutObject"}) {
		t.Errorf("package serverless calls S3's %v; the bucket's grant is GetObject and PutObject", s3Ops)
	}
	if !slices.Equal(secretOps, []string{"secretsmanager:GetSecretValue"}) {
		t.Errorf("package serverless calls Secrets Manager's %v; the secret's grant is GetSecretValue alone", secretOps)
	}
	for _, op := range identityOps {
		if !slices.Contains(storeOps, op) {
			t.Errorf("package serverless calls %s on the connections table (its identity rows), which dynamostore does not, so it is not granted", op)
		}
	}
	// The key decrypts only for Secrets Manager in the function's region.
	if via := text(get(conditions["AgentTokensKey"], "StringEquals", "kms:ViaService")); via != "!Sub secretsmanager.${AWS::Region}.amazonaws.com" {
		t.Errorf("kms:Decrypt condition kms:ViaService = %q, want Secrets Manager of the region", via)
	}
	for res, actions := range granted {
		sort.Strings(actions)
		actions = slices.Compact(actions)
		w, ok := want[res]
		if !ok {
			t.Errorf("unexpected resource %q with %v", res, actions)
			continue
		}
		if !slices.Equal(actions, w) {
			t.Errorf("%s: granted %v, want %v", res, actions, w)
		}
	}
	for res := range want {
		if _, ok := granted[res]; !ok {
			t.Errorf("nothing granted on %s", res)
		}
	}

	// PostToConnection and GetConnection are used, which the POST and GET
	// resources cover.
	for _, f := range parseGo(t, serverlessDir) {
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "DeleteConnection" {
				t.Errorf("the package calls %s; grant ManageConnections beyond POST", sel.Sel.Name)
			}
			return true
		})
	}
}

// The agent tokens come from a Secrets Manager secret named by a required
// parameter; the template has no plaintext tokens.
func TestTemplateSecrets(t *testing.T) {
	c := loadTemplate(t)
	p := get(c.root, "Parameters", "AgentTokensSecretArn")
	if p == nil {
		t.Fatal("no parameter AgentTokensSecretArn")
	}
	if get(p, "Default") != nil {
		t.Error("AgentTokensSecretArn has a default: the secret must be given")
	}
	pattern, err := regexp.Compile("^(?:" + text(get(p, "AllowedPattern")) + ")$") // CloudFormation matches the whole value
	if err != nil {
		t.Fatalf("AllowedPattern: %v", err)
	}
	for arn, ok := range map[string]bool{
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:tunnel-tokens-AbCdEf":        true,
		"arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:tunnel-tokens-Ab": true,
		"arn:aws:ssm:eu-west-1:123456789012:parameter/tunnel/tokens":                       false,
		"tunnel-tokens": false,
		"":              false,
	} {
		if pattern.MatchString(arn) != ok {
			t.Errorf("AllowedPattern matches %q: %v, want %v", arn, !ok, ok)
		}
	}
	desc := text(get(p, "Description"))
	for _, d := range []time.Duration{serverless.DefaultSecretMaxAge, serverless.DefaultSecretMinRefresh} {
		if !strings.Contains(desc, humanDuration(d)) {
			t.Errorf("AgentTokensSecretArn's description does not say %q (the refresh of serverless.SecretAuthenticator)", humanDuration(d))
		}
	}
	for _, name := range keys(get(c.root, "Parameters")) {
		if strings.Contains(strings.ToLower(name), "token") && name != "AgentTokensSecretArn" && name != "AgentTokensKmsKeyArn" {
			t.Errorf("parameter %s: tokens belong in the secret", name)
		}
	}
}

// humanDuration writes whole minutes or seconds as a description does.
func humanDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.Itoa(int(d/time.Minute)) + " minutes"
	}
	return strconv.Itoa(int(d/time.Second)) + " seconds"
}

func TestTemplateAPIs(t *testing.T) {
	c := loadTemplate(t)
	ws := c.resource(t, "WebSocketApi", "AWS::ApiGatewayV2::Api")
	if text(get(ws, "ProtocolType")) != "WEBSOCKET" {
		t.Error("WebSocketApi is not a WEBSOCKET API")
	}
	httpAPI := c.resource(t, "HttpApi", "AWS::ApiGatewayV2::Api")
	if text(get(httpAPI, "ProtocolType")) != "HTTP" {
		t.Error("HttpApi is not an HTTP API")
	}

	// Routes by API, each to an AWS_PROXY integration of the function.
	routes := map[string][]string{}
	for _, name := range c.resourcesOfType("AWS::ApiGatewayV2::Route") {
		r := c.resource(t, name, "AWS::ApiGatewayV2::Route")
		api := text(get(r, "ApiId"))
		routes[api] = append(routes[api], text(get(r, "RouteKey")))
		target := text(get(r, "Target"))
		integ, ok := strings.CutPrefix(target, "!Sub integrations/${")
		integ = strings.TrimSuffix(integ, "}")
		if !ok {
			t.Errorf("route %s: target %q", name, target)
			continue
		}
		ip := c.resource(t, integ, "AWS::ApiGatewayV2::Integration")
		fn := "TunnelFunction"
		if api == "!Ref HttpApi" {
			fn = "PublicFunction"
		}
		if text(get(ip, "IntegrationType")) != "AWS_PROXY" || !strings.Contains(text(get(ip, "IntegrationUri")), fn+".Arn") {
			t.Errorf("integration %s is not an AWS_PROXY integration of %s", integ, fn)
		}
		if text(get(ip, "ApiId")) != api {
			t.Errorf("route %s and integration %s belong to different APIs", name, integ)
		}
		if api == "!Ref HttpApi" && text(get(ip, "PayloadFormatVersion")) != "2.0" {
			t.Errorf("integration %s: payload format %q, want 2.0", integ, text(get(ip, "PayloadFormatVersion")))
		}
	}
	for api, want := range map[string][]string{
		"!Ref WebSocketApi": {"$connect", "$default", "$disconnect"},
		"!Ref HttpApi":      {"$default"},
	} {
		got := routes[api]
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s routes %v, want %v", api, got, want)
		}
	}

	stages := map[string]*yaml.Node{}
	for _, name := range c.resourcesOfType("AWS::ApiGatewayV2::Stage") {
		s := c.resource(t, name, "AWS::ApiGatewayV2::Stage")
		stages[text(get(s, "ApiId"))] = s
		if text(get(s, "AutoDeploy")) != "true" {
			t.Errorf("stage %s does not deploy automatically", name)
		}
	}
	if s := stages["!Ref WebSocketApi"]; text(get(s, "StageName")) != "!Ref StageName" {
		t.Error("WebSocketApi has no stage named by the StageName parameter")
	}
	if s := stages["!Ref HttpApi"]; text(get(s, "StageName")) != "$default" {
		t.Error("HttpApi has no $default stage")
	}

	perms := map[string]bool{}
	for _, name := range c.resourcesOfType("AWS::Lambda::Permission") {
		p := c.resource(t, name, "AWS::Lambda::Permission")
		for fn, api := range map[string]string{"TunnelFunction": "WebSocketApi", "PublicFunction": "HttpApi"} {
			if text(get(p, "FunctionName")) == "!Ref "+fn && text(get(p, "Principal")) == "apigateway.amazonaws.com" &&
				strings.Contains(text(get(p, "SourceArn")), "${"+api+"}/") {
				perms[api] = true
			}
		}
	}
	if !perms["WebSocketApi"] || !perms["HttpApi"] {
		t.Errorf("invoke permissions %v, want both APIs", perms)
	}

	if got := text(get(c.root, "Outputs", "WebSocketURL", "Value")); !strings.HasPrefix(got, "!Sub wss://${WebSocketApi}.") || !strings.HasSuffix(got, "/${StageName}") {
		t.Errorf("output WebSocketURL %q", got)
	}
	if got := text(get(c.root, "Outputs", "HttpApiURL", "Value")); got != "!GetAtt HttpApi.ApiEndpoint" {
		t.Errorf("output HttpApiURL %q", got)
	}
}

func TestTemplateSchedule(t *testing.T) {
	c := loadTemplate(t)
	events := get(c.function(t), "Events")
	found := false
	for _, name := range keys(events) {
		ev := get(events, name)
		if text(get(ev, "Type")) != "Schedule" {
			continue
		}
		found = true
		if got := text(get(ev, "Properties", "Schedule")); got != "rate(15 minutes)" {
			t.Errorf("schedule %s: %q, want rate(15 minutes)", name, got)
		}
		if get(ev, "Properties", "Input") != nil {
			t.Errorf("schedule %s has an Input: the function recognises the scheduled event itself", name)
		}
	}
	if !found {
		t.Fatal("template has no Schedule event")
	}

	// Invoke must still recognise the scheduled event by its source.
	recognised := false
	for _, f := range parseGo(t, serverlessDir) {
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := stringLit(asExpr(n)); ok && s == "aws.events" {
				recognised = true
			}
			return true
		})
	}
	if !recognised {
		t.Error(`the package does not recognise events of source "aws.events"`)
	}
}

func asExpr(n ast.Node) ast.Expr {
	e, _ := n.(ast.Expr)
	return e
}

// subVar matches a variable of Fn::Sub; "${!" is a literal.
var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

func TestTemplateReferences(t *testing.T) {
	c := loadTemplate(t)
	known := map[string]bool{}
	for _, n := range keys(get(c.root, "Resources")) {
		known[n] = true
	}
	for _, n := range keys(get(c.root, "Parameters")) {
		known[n] = true
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil {
			return
		}
		if n.Kind == yaml.ScalarNode {
			var names []string
			switch n.Tag {
			case "!Ref":
				names = []string{n.Value}
			case "!GetAtt":
				names = []string{strings.SplitN(n.Value, ".", 2)[0]}
			case "!Sub":
				for _, m := range subVar.FindAllStringSubmatch(n.Value, -1) {
					names = append(names, strings.SplitN(m[1], ".", 2)[0])
				}
			}
			for _, name := range names {
				if !known[name] && !strings.HasPrefix(name, "AWS::") {
					t.Errorf("line %d: %s refers to unknown %q", n.Line, n.Tag, name)
				}
			}
		}
		for _, child := range n.Content {
			walk(child)
		}
	}
	walk(c.root)
}

func TestTemplateDashboard(t *testing.T) {
	c := loadTemplate(t)
	body := get(c.resource(t, "Dashboard", "AWS::CloudWatch::Dashboard"), "DashboardBody")
	if body == nil || body.Tag != "!Sub" {
		t.Fatal("DashboardBody is not a !Sub string")
	}
	// A naive Fn::Sub: every variable becomes a plain word.
	src := subVar.ReplaceAllString(body.Value, "value")
	var dash struct {
		Widgets []struct {
			Type       string `json:"type"`
			Properties struct {
				Title   string  `json:"title"`
				Metrics [][]any `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(src), &dash); err != nil {
		t.Fatalf("DashboardBody is not JSON after substitution: %v", err)
	}
	if len(dash.Widgets) == 0 {
		t.Fatal("dashboard has no widgets")
	}
	// Charted metrics by namespace, and the expressions.
	charted := map[string]bool{}
	var exprs []string
	for _, w := range dash.Widgets {
		for _, m := range w.Properties.Metrics {
			if len(m) >= 2 {
				ns, _ := m[0].(string)
				name, _ := m[1].(string)
				charted[ns+" "+name] = true
			}
			for _, e := range m {
				if opts, ok := e.(map[string]any); ok {
					if ex, ok := opts["expression"].(string); ok {
						exprs = append(exprs, ex)
					}
				}
			}
		}
	}
	for _, name := range []string{
		observability.MetricConnectionEstablished,
		observability.MetricConnectionClosed,
		observability.MetricRequestForwarded,
		observability.MetricRequestLatency,
		observability.MetricCacheHits,
		observability.MetricCacheMisses,
	} {
		if !charted[serverless.EMFNamespace+" "+name] {
			t.Errorf("dashboard does not chart %s %s", serverless.EMFNamespace, name)
		}
	}
	searches := strings.Join(exprs, "\n")
	if !strings.Contains(searches, `MetricName="`+observability.MetricErrorOccurred+`"`) || !strings.Contains(searches, "{"+serverless.EMFNamespace+`,"error.code"}`) {
		t.Errorf("dashboard does not chart %s by error.code", observability.MetricErrorOccurred)
	}
	if !strings.Contains(searches, `MetricName="ThrottledRequests"`) {
		t.Error("dashboard does not chart AWS/DynamoDB ThrottledRequests")
	}
	for _, m := range []string{"AWS/Lambda Errors", "AWS/Lambda Throttles", "AWS/Lambda Duration"} {
		if !charted[m] {
			t.Errorf("dashboard does not chart %s", m)
		}
	}
	for _, stat := range []string{`"p50"`, `"p95"`, `"p99"`} {
		if !strings.Contains(src, stat) {
			t.Errorf("dashboard has no %s statistic", stat)
		}
	}
}

func TestTemplateAlarms(t *testing.T) {
	c := loadTemplate(t)
	found := map[string]bool{}
	for _, name := range c.resourcesOfType("AWS::CloudWatch::Alarm") {
		a := c.resource(t, name, "AWS::CloudWatch::Alarm")
		metric := text(get(a, "Namespace")) + " " + text(get(a, "MetricName"))
		switch metric {
		case "AWS/Lambda Errors", "AWS/Lambda Throttles":
			dims := list(get(a, "Dimensions"))
			fn := text(get(dims[0], "Value"))
			if len(dims) != 1 || text(get(dims[0], "Name")) != "FunctionName" || (fn != "!Ref TunnelFunction" && fn != "!Ref PublicFunction") {
				t.Errorf("alarm %s is not on one of the functions", name)
			}
			found[metric+" "+fn] = true
		case serverless.EMFNamespace + " " + observability.MetricRequestLatency:
			if text(get(a, "ExtendedStatistic")) != "p95" {
				t.Errorf("alarm %s is not on p95", name)
			}
		case " ":
			for _, m := range list(get(a, "Metrics")) {
				mn := text(get(m, "MetricStat", "Metric", "MetricName"))
				if text(get(m, "MetricStat", "Metric", "Namespace")) == "AWS/DynamoDB" && strings.Contains(mn, "Throttle") {
					metric = "AWS/DynamoDB throttling"
				}
			}
		}
		found[metric] = true
	}
	for _, want := range []string{
		"AWS/Lambda Errors !Ref TunnelFunction",
		"AWS/Lambda Errors !Ref PublicFunction",
		"AWS/Lambda Throttles !Ref TunnelFunction",
		"AWS/Lambda Throttles !Ref PublicFunction",
		serverless.EMFNamespace + " " + observability.MetricRequestLatency,
		"AWS/DynamoDB throttling",
	} {
		if !found[want] {
			t.Errorf("no alarm on %s (alarms on %v)", want, found)
		}
	}
}

// TestTemplateLoad checks the separation that keeps public requests from
// starving the agents' answers (docs/serverless.md, "Load"): two functions,
// the agent side with reserved concurrency, the HTTP API stage throttled,
// and the public function configured as the agent side, granted only what
// the public side calls (no secrets, no cleanup, no writing of bodies).
func TestTemplateLoad(t *testing.T) {
	c := loadTemplate(t)
	agent := c.function(t)
	public := c.resource(t, "PublicFunction", "AWS::Serverless::Function")
	if got := text(get(agent, "ReservedConcurrentExecutions")); got != "!Ref AgentConcurrency" {
		t.Errorf("TunnelFunction reserved concurrency %q, want !Ref AgentConcurrency", got)
	}
	if get(c.root, "Parameters", "AgentConcurrency", "MinValue") == nil || text(get(c.root, "Parameters", "AgentConcurrency", "MinValue")) == "0" {
		t.Error("AgentConcurrency may be 0, which throttles every agent message")
	}
	if got := dump(t, get(public, "ReservedConcurrentExecutions")); !strings.Contains(got, "PublicConcurrency") {
		t.Errorf("PublicFunction reserved concurrency %q, want PublicConcurrency", got)
	}
	var stage *yaml.Node
	for _, name := range c.resourcesOfType("AWS::ApiGatewayV2::Stage") {
		if s := c.resource(t, name, "AWS::ApiGatewayV2::Stage"); text(get(s, "ApiId")) == "!Ref HttpApi" {
			stage = s
		}
	}
	if text(get(stage, "DefaultRouteSettings", "ThrottlingRateLimit")) != "!Ref PublicRateLimit" ||
		text(get(stage, "DefaultRouteSettings", "ThrottlingBurstLimit")) != "!Ref PublicBurstLimit" {
		t.Error("the HTTP API stage is not throttled by PublicRateLimit and PublicBurstLimit")
	}

	for _, prop := range []string{"CodeUri", "Handler", "Runtime", "Timeout", "MemorySize", "Architectures", "Environment", "Tracing"} {
		if a, p := dump(t, get(agent, prop)), dump(t, get(public, prop)); a != p {
			t.Errorf("PublicFunction's %s differs from TunnelFunction's:\n%s\nwant\n%s", prop, p, a)
		}
	}
	// Each side is granted what its code calls, no more: the agent side
	// runs the handshake (secrets), the answers (writing bodies) and the
	// scheduled cleanup (Scan, BatchWriteItem); the public side reads
	// answers and their bodies.
	actions := func(fn *yaml.Node) map[string]bool {
		got := map[string]bool{}
		for _, st := range list(get(list(get(fn, "Policies"))[0], "Statement")) {
			for _, a := range list(get(st, "Action")) {
				got[text(a)] = true
			}
			if strings.Contains(dump(t, st), "secretsmanager") {
				got["secretsmanager"] = true
			}
		}
		return got
	}
	agentActions, publicActions := actions(agent), actions(public)
	for _, tt := range []struct {
		action        string
		agent, public bool
	}{
		{"secretsmanager", true, false},
		{"s3:PutObject", true, false},
		{"s3:GetObject", false, true},
		{"dynamodb:Scan", true, false},
		{"dynamodb:BatchWriteItem", true, false},
		{"dynamodb:GetItem", true, true},
		{"dynamodb:PutItem", true, true},
		{"dynamodb:DeleteItem", true, true},
		{"dynamodb:BatchGetItem", true, true},
		{"dynamodb:Query", true, true},
		{"execute-api:ManageConnections", true, true},
	} {
		if agentActions[tt.action] != tt.agent || publicActions[tt.action] != tt.public {
			t.Errorf("%s granted: TunnelFunction %v, PublicFunction %v; want %v and %v",
				tt.action, agentActions[tt.action], publicActions[tt.action], tt.agent, tt.public)
		}
	}

	// With XRay=1, Lambda traces every invocation (active tracing), whose
	// trace context public requests continue.
	if got := dump(t, get(agent, "Tracing")); !strings.Contains(got, "XRayOn") || !strings.Contains(got, "Active") {
		t.Errorf("TunnelFunction's Tracing %q, want Active under XRayOn", got)
	}

	// Logs are kept for LogRetentionDays, in a group both functions use.
	lg := c.resource(t, "FunctionLogGroup", "AWS::Logs::LogGroup")
	if text(get(lg, "RetentionInDays")) != "!Ref LogRetentionDays" {
		t.Error("the functions' log group has no retention")
	}
	for name, fn := range map[string]*yaml.Node{"TunnelFunction": agent, "PublicFunction": public} {
		if text(get(fn, "LoggingConfig", "LogGroup")) != "!Ref FunctionLogGroup" {
			t.Errorf("%s does not log to FunctionLogGroup", name)
		}
	}

	// Response bodies expire with a lifecycle rule, the only deletion.
	bucket := c.resource(t, "BodyBucket", "AWS::S3::Bucket")
	rules := list(get(bucket, "LifecycleConfiguration", "Rules"))
	if len(rules) != 1 || text(get(rules[0], "Status")) != "Enabled" || text(get(rules[0], "ExpirationInDays")) != "1" {
		t.Error("BodyBucket does not expire objects after a day")
	}
	if text(get(bucket, "PublicAccessBlockConfiguration", "RestrictPublicBuckets")) != "true" {
		t.Error("BodyBucket does not block public access")
	}

	// Two stacks in one account never share a table.
	for _, name := range c.resourcesOfType("AWS::DynamoDB::Table") {
		if got := text(get(c.resource(t, name, "AWS::DynamoDB::Table"), "TableName")); !strings.Contains(got, "${AWS::StackName}") {
			t.Errorf("table %s is named %q, without the stack name", name, got)
		}
	}
	// The documented build is static: an arm64 build host would otherwise
	// link the binary dynamically.
	if d := text(get(c.root, "Description")); !strings.Contains(d, "CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build") {
		t.Error("the template's build command does not set CGO_ENABLED=0")
	}
}

// dump renders n as YAML, to compare subtrees.
func dump(t *testing.T, n *yaml.Node) string {
	t.Helper()
	if n == nil {
		return ""
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
