package store

import (
	"context"
	"time"
)

// Service account kinds.
const (
	// KindOrganisational is a shared account of a team or department
	// ("Cardiologie — CHU"), answered by several practitioners.
	KindOrganisational = "organisational"
	// KindApplicative is an account used by software (a lab system posting
	// results), never by a person directly.
	KindApplicative = "applicative"
	// KindAdmin may use the admin API and nothing else: running the hub is
	// not a reason to read or join care conversations.
	KindAdmin = "admin"
)

// ServiceAccount registers an account that is not a practitioner's own.
// Organisational and applicative accounts are authorised through their
// responsible practitioner: when that person leaves the directory, the
// account stops too.
type ServiceAccount struct {
	Localpart        string
	Kind             string
	Name             string
	ResponsibleIDNat string // empty for KindAdmin
	CreatedAt        time.Time
}

// TrustStore holds what the trust space needs beyond the directory.
type TrustStore interface {
	// CreateServiceAccount registers a service account (ErrExists).
	CreateServiceAccount(ctx context.Context, a ServiceAccount) error
	ServiceAccounts(ctx context.Context) ([]ServiceAccount, error)

	// Accounts streams every account, in localpart order (PasswordHash
	// not filled).
	Accounts(ctx context.Context, fn func(Account) error) error
	// AccountsExist reports which of the localparts have an account.
	AccountsExist(ctx context.Context, localparts []string) (map[string]bool, error)

	// PutLoginToken stores a single-use login token (its SHA-256).
	PutLoginToken(ctx context.Context, tokenHash []byte, localpart string, expires time.Time) error
	// TakeLoginToken consumes a token: it returns the localpart once and
	// deletes the row; unknown, used or expired tokens are ErrNotFound.
	TakeLoginToken(ctx context.Context, tokenHash []byte, now time.Time) (string, error)

	// DirectoryRevision changes whenever the current directory does.
	DirectoryRevision(ctx context.Context) (int64, error)
	// UpsertDirectory writes records into the current generation (an
	// incremental sync). It fails with ErrNotFound before the first full
	// import: an incremental change needs a base. inactivated counts
	// practitioners who were active and no longer are.
	UpsertDirectory(ctx context.Context, recs []DirectoryRecord) (inactivated int, err error)
}
