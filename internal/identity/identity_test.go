package identity_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/eimis-hub/eimis/internal/identity"
	"github.com/eimis-hub/eimis/internal/store/sqlite"
)

func TestAccountsAndSessions(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := identity.New(st, "hub.test", bcrypt.MinCost)

	uid, err := ids.CreateAccount(ctx, "Alice", "pw", false)
	if err != nil || uid != "@alice:hub.test" {
		t.Fatalf("create = %s, %v", uid, err)
	}
	if _, err := ids.CreateAccount(ctx, "alice", "pw", false); !errors.Is(err, identity.ErrUserExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := ids.CheckPassword(ctx, "alice", "wrong"); !errors.Is(err, identity.ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := ids.CheckPassword(ctx, "nobody", "pw"); !errors.Is(err, identity.ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	acc, err := ids.CheckPassword(ctx, "alice", "pw")
	if err != nil || acc.PasswordHash == "pw" {
		t.Fatalf("password check: %v (hash stored in clear?)", err)
	}

	tok, dev, err := ids.NewSession(ctx, "alice", "", "phone")
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := st.ListDevices(ctx, "alice")
	if len(devs) != 1 || string(devs[0].TokenHash) == tok {
		t.Fatal("token must be stored hashed")
	}
	s, err := ids.Authenticate(ctx, tok)
	if err != nil || s.UserID != uid || s.DeviceID != dev {
		t.Fatalf("authenticate = %+v, %v", s, err)
	}
	if err := ids.Logout(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The cache is cleared on logout: the token stops working at once here.
	if _, err := ids.Authenticate(ctx, tok); !errors.Is(err, identity.ErrUnknownToken) {
		t.Fatalf("token after logout: %v", err)
	}

	t1, _, _ := ids.NewSession(ctx, "alice", "", "a")
	t2, _, _ := ids.NewSession(ctx, "alice", "", "b")
	s1, _ := ids.Authenticate(ctx, t1)
	if err := ids.LogoutAll(ctx, s1); err != nil {
		t.Fatal(err)
	}
	for _, tk := range []string{t1, t2} {
		if _, err := ids.Authenticate(ctx, tk); !errors.Is(err, identity.ErrUnknownToken) {
			t.Fatalf("token after logout/all: %v", err)
		}
	}
	if _, err := ids.LocalpartOf("@bob:elsewhere"); err == nil {
		t.Fatal("remote user accepted as local")
	}
}
