package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cryptvol/cryptvol/keys"
)

// identityKeys is fakeKeys seen through one tenant's identity: it records
// which identity made each call, so the test can tell that a tenant's
// volume never goes through the plugin's own identity.
type identityKeys struct {
	fakeKeys
	who  string
	mu   *sync.Mutex
	used *[]string
}

func (k identityKeys) note(op string) {
	k.mu.Lock()
	*k.used = append(*k.used, k.who+" "+op)
	k.mu.Unlock()
}

func (k identityKeys) Create(ctx context.Context, name, group string) (string, *keys.Key, error) {
	k.note("create")
	return k.fakeKeys.Create(ctx, name, group)
}
func (k identityKeys) Get(ctx context.Context, id string) (*keys.Key, error) {
	k.note("get")
	return k.fakeKeys.Get(ctx, id)
}
func (k identityKeys) Destroy(ctx context.Context, id string) error {
	k.note("destroy")
	return k.fakeKeys.Destroy(ctx, id)
}

// Option tenant: the key is made, fetched and destroyed through the
// tenant's identity only; the tenant shows in inspect and in the tag; a
// tenant without an identity is refused before anything is made; a create
// again with another tenant is refused naming both.
func TestTenantVolumeUsesOnlyTheTenantsIdentity(t *testing.T) {
	var mu sync.Mutex
	var used []string
	var h *harness
	h = newHarness(t, func(c *Config) {
		c.TenantKeys = func(tenant string) (Keys, error) {
			if tenant != "blue" && tenant != "green" {
				return nil, errors.New(`tenant "` + tenant + `" has no KMIP identity here: want its client certificate and key`)
			}
			return identityKeys{fakeKeys{h.s}, tenant, &mu, &used}, nil
		}
	})
	h.mustCreate("tv", map[string]string{"tenant": "blue"})
	h.mustMount("tv", "c1")
	h.mustUnmount("tv", "c1")
	v, err := h.m.Get(h.ctx, "tv")
	if err != nil || v.Status[StatusTenant] != "blue" {
		t.Fatalf("inspect: %v %v; want tenant blue", v.Status, err)
	}
	if !slices.Contains(h.w.lvs["cv-tv"].Tags, "cryptvol_tenant_blue") {
		t.Errorf("LV tags %v lack cryptvol_tenant_blue", h.w.lvs["cv-tv"].Tags)
	}
	err = h.m.Create(h.ctx, "tv", map[string]string{"tenant": "green"})
	if err == nil || !strings.Contains(err.Error(), `tenant is "blue", requested "green"`) {
		t.Errorf("create again for another tenant: %v", err)
	}
	keysBefore := len(h.w.keys)
	err = h.m.Create(h.ctx, "gv", map[string]string{"tenant": "red"})
	if err == nil || !strings.Contains(err.Error(), `option tenant: tenant "red" has no KMIP identity`) {
		t.Errorf("create for a tenant without identity: %v", err)
	}
	if _, ok := h.w.lvs["cv-gv"]; ok || len(h.w.keys) != keysBefore {
		t.Error("the refused tenant create made something")
	}
	if err := h.m.Create(h.ctx, "bad", map[string]string{"tenant": "../x"}); err == nil || !strings.Contains(err.Error(), "allowed: 1-63 characters") {
		t.Errorf("a tenant name with a path: %v", err)
	}
	if err := h.m.Remove(h.ctx, "tv"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"blue create", "blue get", "blue destroy"}; !slices.Equal(used, want) {
		t.Errorf("tenant identity calls %v, want %v", used, want)
	}
	if len(h.w.keys) != 0 {
		t.Errorf("keys left: %d", len(h.w.keys))
	}
}

// Without tenant identities configured the option is refused.
func TestTenantOptionWithoutTenantsIsRefused(t *testing.T) {
	h := newHarness(t)
	err := h.m.Create(h.ctx, "tv", map[string]string{"tenant": "blue"})
	if err == nil || !strings.Contains(err.Error(), "no tenant identities configured") {
		t.Fatalf("got %v", err)
	}
}

// A clone or snapshot belongs to its source's tenant: its key is made
// through that tenant's identity whether or not tenant= is given, and
// another tenant, or one for a source without, is refused before
// anything is made.
func TestCloneKeepsItsSourcesTenant(t *testing.T) {
	var mu sync.Mutex
	var used []string
	var h *harness
	h = newHarness(t, func(c *Config) {
		c.ThinPool = "pool"
		c.TenantKeys = func(tenant string) (Keys, error) {
			if tenant != "blue" && tenant != "green" {
				return nil, errors.New(`tenant "` + tenant + `" has no KMIP identity here`)
			}
			return identityKeys{fakeKeys{h.s}, tenant, &mu, &used}, nil
		}
	})
	h.mustCreate("src", map[string]string{"tenant": "blue"})
	h.mustCreate("plain", nil)
	used = nil
	h.mustCreate("snap", map[string]string{"from": "src", "readonly": "true"})
	h.mustCreate("copy", map[string]string{"from": "src", "tenant": "blue"})
	for _, name := range []string{"snap", "copy"} {
		if !slices.Contains(h.w.lvs["cv-"+name].Tags, "cryptvol_tenant_blue") {
			t.Errorf("%s: LV tags %v lack the source's tenant", name, h.w.lvs["cv-"+name].Tags)
		}
	}
	for _, u := range used {
		if !strings.HasPrefix(u, "blue ") {
			t.Errorf("a clone of blue's volume went through %q", u)
		}
	}
	if want := 2; countPrefix(used, "blue create") != want {
		t.Errorf("keys made through blue's identity: %v, want %d creates", used, want)
	}
	keysBefore := len(h.w.keys)
	for _, c := range []struct{ opts map[string]string }{
		{map[string]string{"from": "src", "tenant": "green"}},
		{map[string]string{"from": "plain", "tenant": "green"}},
	} {
		err := h.m.Create(h.ctx, "other", c.opts)
		if err == nil || !strings.Contains(err.Error(), "a clone belongs to its source's tenant") || !strings.Contains(err.Error(), "allowed: leave tenant out") {
			t.Errorf("clone %v: %v, want a refusal naming the source's tenant", c.opts, err)
		}
		if _, ok := h.w.lvs["cv-other"]; ok || len(h.w.keys) != keysBefore {
			t.Fatalf("the refused clone %v made something", c.opts)
		}
	}
	h.assertConsistent()
}

func countPrefix(ss []string, p string) int {
	n := 0
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			n++
		}
	}
	return n
}
