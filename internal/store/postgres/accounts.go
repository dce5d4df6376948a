package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eimis-hub/eimis/internal/store"
)

// Accounts and devices.

func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO accounts (localpart, password_hash, admin, display_name, avatar_url, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (localpart) DO NOTHING`,
		a.Localpart, a.PasswordHash, a.Admin, a.DisplayName, a.AvatarURL, nowIfZero(a.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: create account %q: %w", a.Localpart, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create account %q: %w", a.Localpart, store.ErrExists)
	}
	return nil
}

func (s *Store) GetAccount(ctx context.Context, localpart string) (*store.Account, error) {
	var a store.Account
	err := s.pool.QueryRow(ctx, `SELECT localpart, password_hash, admin, display_name, avatar_url, created_at
		FROM accounts WHERE localpart = $1`, localpart).
		Scan(&a.Localpart, &a.PasswordHash, &a.Admin, &a.DisplayName, &a.AvatarURL, &a.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: account %q: %w", localpart, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: account %q: %w", localpart, err)
	}
	return &a, nil
}

func (s *Store) SearchAccounts(ctx context.Context, term string, limit int) ([]store.Account, error) {
	t := strings.ToLower(term)
	anywhere := store.LikePattern(term)
	rows, err := s.pool.Query(ctx, `SELECT localpart, admin, display_name, avatar_url, created_at FROM accounts
		WHERE lower(localpart) LIKE $1 ESCAPE '\' OR lower(display_name) LIKE $1 ESCAPE '\'
		ORDER BY CASE WHEN lower(localpart) = $2 OR lower(display_name) = $2 THEN 0
		              WHEN lower(localpart) LIKE $3 ESCAPE '\' OR lower(display_name) LIKE $3 ESCAPE '\' THEN 1
		              ELSE 2 END, display_name, localpart
		LIMIT $4`, anywhere, t, strings.TrimPrefix(anywhere, "%"), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: search accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) {
		var a store.Account
		err := r.Scan(&a.Localpart, &a.Admin, &a.DisplayName, &a.AvatarURL, &a.CreatedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: search accounts: %w", err)
	}
	return out, nil
}

// execOne runs a write that must touch a row, reporting ErrNotFound when
// it touched none.
func (s *Store) execOne(ctx context.Context, what, query string, args ...any) error {
	tag, err := s.pool.Exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (s *Store) SetDisplayName(ctx context.Context, localpart, name string) error {
	return s.execOne(ctx, "set display name of "+localpart,
		`UPDATE accounts SET display_name = $1 WHERE localpart = $2`, name, localpart)
}

func (s *Store) SetAvatarURL(ctx context.Context, localpart, url string) error {
	return s.execOne(ctx, "set avatar of "+localpart,
		`UPDATE accounts SET avatar_url = $1 WHERE localpart = $2`, url, localpart)
}

func (s *Store) CreateDevice(ctx context.Context, d store.Device) error {
	created := nowIfZero(d.CreatedAt)
	seen := d.LastSeen
	if seen.IsZero() {
		seen = created
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO devices (localpart, device_id, display_name, token_hash, created_at, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (localpart, device_id) DO UPDATE SET display_name = excluded.display_name,
			token_hash = excluded.token_hash, created_at = excluded.created_at, last_seen = excluded.last_seen`,
		d.Localpart, d.DeviceID, d.DisplayName, d.TokenHash, created, seen)
	switch code, _ := pgCode(err); {
	case err == nil:
		return nil
	case code == foreignKeyViolation:
		return fmt.Errorf("postgres: create device %q for %q: account: %w", d.DeviceID, d.Localpart, store.ErrNotFound)
	case code == uniqueViolation:
		return fmt.Errorf("postgres: create device %q for %q: token hash: %w", d.DeviceID, d.Localpart, store.ErrExists)
	default:
		return fmt.Errorf("postgres: create device %q for %q: %w", d.DeviceID, d.Localpart, err)
	}
}

const deviceCols = `localpart, device_id, display_name, token_hash, created_at, last_seen`

func scanDevice(row pgx.Row) (store.Device, error) {
	var d store.Device
	err := row.Scan(&d.Localpart, &d.DeviceID, &d.DisplayName, &d.TokenHash, &d.CreatedAt, &d.LastSeen)
	return d, err
}

func (s *Store) DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*store.Device, error) {
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE token_hash = $1`, tokenHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: device by token: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: device by token: %w", err)
	}
	return &d, nil
}

func (s *Store) ListDevices(ctx context.Context, localpart string) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceCols+` FROM devices WHERE localpart = $1 ORDER BY device_id`, localpart)
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices of %q: %w", localpart, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Device, error) { return scanDevice(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices of %q: %w", localpart, err)
	}
	return out, nil
}

func (s *Store) DeleteDevice(ctx context.Context, localpart, deviceID string) error {
	return s.execOne(ctx, "delete device "+deviceID+" of "+localpart,
		`DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID)
}

func (s *Store) DeleteAllDevices(ctx context.Context, localpart string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE localpart = $1`, localpart); err != nil {
		return fmt.Errorf("postgres: delete devices of %q: %w", localpart, err)
	}
	return nil
}

func (s *Store) TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error {
	return s.execOne(ctx, "touch device "+deviceID+" of "+localpart,
		`UPDATE devices SET last_seen = $1 WHERE localpart = $2 AND device_id = $3`, at, localpart, deviceID)
}
