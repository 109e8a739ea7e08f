package volume

import (
	"context"
	"fmt"
	"time"

	"github.com/cryptvol/cryptvol/audit"
	"github.com/cryptvol/cryptvol/keys"
	"github.com/cryptvol/cryptvol/lvm"
)

// Auditor takes the audit trail's events and the metrics'. Implemented by
// *audit.Log, the metrics, or audit.Tee of both; nil in Config means
// neither.
type Auditor = audit.Sink

// record sends e to the trail, if there is one.
func (m *Manager) record(e audit.Event) {
	if m.cfg.Audit != nil {
		m.cfg.Audit.Record(e)
	}
}

// recordOp is deferred by the Docker-facing operations: one event per
// call, with its outcome and duration since start.
func (m *Manager) recordOp(op, name, mountID string, start time.Time, err *error) {
	m.record(audit.Event{Op: op, Volume: name, MountID: mountID, Err: *err, Took: time.Since(start)})
}

// repaired records a repair made by reconciliation or the sweeper.
func (m *Manager) repaired(name, what string, err error) {
	m.record(audit.Event{Op: "volume.repair", Volume: name, Detail: what, Err: err})
}

// The key operations, each recorded with the volume it serves. All KMIP
// calls of the lifecycle go through these.

// Each runs as the tenant's KMIP identity ("" is the plugin's own).

// keyCreate makes the key in KMIP Object Group group ("": the client's own).
func (m *Manager) keyCreate(ctx context.Context, name, tenant, keyName, group string) (id string, key *keys.Key, err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else {
		id, key, err = k.Create(ctx, keyName, group)
	}
	detail := "created and activated " + keyName
	if group != "" {
		detail += " in KMIP object group " + group
	}
	m.record(audit.Event{Op: "key.create", Volume: name, Tenant: tenant, KeyID: id, Detail: detail, Err: err, Took: time.Since(start)})
	return id, key, err
}

// keyGet hands out the key only if its KMIP name binds it to volume name
// (binding.go); a refusal is recorded like any failed Get.
func (m *Manager) keyGet(ctx context.Context, name, tenant, id string) (key *keys.Key, err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else if key, err = k.Get(ctx, id); err == nil {
		if err = m.checkKeyBinding(ctx, name, id, key.Names()); err != nil {
			key.Wipe()
			key = nil
		}
	}
	m.record(audit.Event{Op: "key.get", Volume: name, Tenant: tenant, KeyID: id, Err: err, Took: time.Since(start)})
	return key, err
}

func (m *Manager) keyDestroy(ctx context.Context, name, tenant, id string) (err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else {
		err = k.Destroy(ctx, id)
	}
	m.record(audit.Event{Op: "key.destroy", Volume: name, Tenant: tenant, KeyID: id, Detail: "revoked and destroyed", Err: err, Took: time.Since(start)})
	return err
}

// keyDeactivate revokes a trashed volume's key (trash.go); trash is the
// trash id it serves.
func (m *Manager) keyDeactivate(ctx context.Context, trash, tenant, id string) (err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else {
		err = k.Deactivate(ctx, id)
	}
	m.record(audit.Event{Op: "key.deactivate", Volume: trash, Tenant: tenant, KeyID: id, Detail: "revoked (cessation of operation): the volume is in the trash", Err: err, Took: time.Since(start)})
	return err
}

// keyGetDeactivated is keyGet for a restore from the trash (untrash.go):
// the key may be Deactivated, and its name must bind it to name, the
// volume it was made for.
func (m *Manager) keyGetDeactivated(ctx context.Context, name, tenant, id string) (key *keys.Key, err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else if key, err = k.GetDeactivated(ctx, id); err == nil {
		if err = m.checkKeyBinding(ctx, name, id, key.Names()); err != nil {
			key.Wipe()
			key = nil
		}
	}
	m.record(audit.Event{Op: "key.get", Volume: name, Tenant: tenant, KeyID: id, Detail: "deactivated key, for a restore from the trash", Err: err, Took: time.Since(start)})
	return key, err
}

func (m *Manager) keyLocate(ctx context.Context, name, tenant, keyName string) (ids []string, err error) {
	start := time.Now()
	if k, kerr := m.keysFor(tenant); kerr != nil {
		err = kerr
	} else {
		ids, err = k.Locate(ctx, keyName)
	}
	m.record(audit.Event{Op: "key.locate", Volume: name, Tenant: tenant, Detail: keyName, Err: err, Took: time.Since(start)})
	return ids, err
}

// keysFor is the key manager of a tenant: the plugin's own for "".
func (m *Manager) keysFor(tenant string) (Keys, error) {
	if tenant == "" {
		return m.keys, nil
	}
	if m.cfg.TenantKeys == nil {
		return nil, fmt.Errorf("tenant %q: this plugin has no tenant identities configured", tenant)
	}
	return m.cfg.TenantKeys(tenant)
}

// tenantOf is the tenant an LV's tag names ("" for the plugin's own).
func tenantOf(lv lvm.LV) string { return tagValue(lv.Tags, tagTenantPrefix) }

// tenantDesc names a tenant in a message; "" is the plugin's own identity.
func tenantDesc(t string) string {
	if t == "" {
		return "no tenant (the plugin's own KMIP identity)"
	}
	return fmt.Sprintf("tenant %q", t)
}
