package daemon

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// openAPI is what the test reads of docs/api/openapi.yaml.
type openAPI struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components map[string]map[string]yaml.Node `yaml:"components"`
}

type openAPIOp struct {
	Role      string               `yaml:"x-role"`
	Responses map[string]yaml.Node `yaml:"responses"`
}

// TestOpenAPIMatchesRoutes holds docs/api/openapi.yaml to the server: the
// same paths and methods as adminRoutes, the role each declares, the
// errors every operation can answer, the error codes of clusterapi, and
// every $ref resolving.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../../docs/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	served := map[string]route{}
	for _, rt := range adminRoutes {
		served[rt.method+" "+rt.path] = rt
	}
	described := map[string]bool{}
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/v1/") {
			t.Errorf("openapi.yaml: path %s is not under /v1/", path)
		}
		for method, node := range item {
			if method == "parameters" || strings.HasPrefix(method, "x-") {
				continue
			}
			key := strings.ToUpper(method) + " " + path
			described[key] = true
			rt, ok := served[key]
			if !ok {
				t.Errorf("openapi.yaml describes %s, which the server does not serve", key)
				continue
			}
			var op openAPIOp
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			wantRole := RoleReadOnly
			if rt.write {
				wantRole = RoleOperator
			}
			if op.Role != wantRole.String() {
				t.Errorf("openapi.yaml: %s has x-role %q; the server's route needs %v", key, op.Role, wantRole)
			}
			want := []string{"200", "403"}
			if rt.method == http.MethodPost {
				want = append(want, "400", "413")
			}
			for _, code := range want {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("openapi.yaml: %s does not describe its %s answer", key, code)
				}
			}
		}
	}
	for key := range served {
		if !described[key] {
			t.Errorf("the server serves %s, which openapi.yaml does not describe", key)
		}
	}

	// The error codes: the schema's enum is clusterapi's list.
	var errSchema struct {
		Properties struct {
			Code struct {
				Enum []string `yaml:"enum"`
			} `yaml:"code"`
		} `yaml:"properties"`
	}
	node := doc.Components["schemas"]["Error"]
	if err := node.Decode(&errSchema); err != nil {
		t.Fatal(err)
	}
	codes := []string{clusterapi.CodeBadRequest, clusterapi.CodeForbidden, clusterapi.CodeNotFound, clusterapi.CodeMethodNotAllowed, clusterapi.CodeTxFailed,
		clusterapi.CodeTooLarge, clusterapi.CodeInternal, clusterapi.CodeNotServing, clusterapi.CodeTimeout}
	got := slices.Sorted(slices.Values(errSchema.Properties.Code.Enum))
	if fmt.Sprint(got) != fmt.Sprint(slices.Sorted(slices.Values(codes))) {
		t.Errorf("openapi.yaml's error codes %v, clusterapi's %v", got, codes)
	}

	// Every $ref names a component that exists.
	var all yaml.Node
	if err := yaml.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for i := 0; i < len(n.Content); i++ {
			c := n.Content[i]
			if n.Kind == yaml.MappingNode && i%2 == 0 && c.Value == "$ref" && i+1 < len(n.Content) {
				ref := n.Content[i+1].Value
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				if _, ok := doc.Components[parts[0]][parts[len(parts)-1]]; len(parts) != 2 || !ok {
					t.Errorf("openapi.yaml line %d: $ref %s names nothing", c.Line, ref)
				}
			}
			walk(c)
		}
	}
	walk(&all)
}
