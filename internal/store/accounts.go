package store

import (
	"context"
	"time"
)

// Account is a local user.
type Account struct {
	Localpart    string
	PasswordHash string // bcrypt; empty means password login is disabled
	Admin        bool
	DisplayName  string
	AvatarURL    string
	CreatedAt    time.Time
}

// Device is one login session of an account. The access token itself is
// never stored: only its SHA-256 (TokenHash).
type Device struct {
	Localpart   string
	DeviceID    string
	DisplayName string
	TokenHash   []byte
	CreatedAt   time.Time
	LastSeen    time.Time
}

// AccountStore keeps local accounts and their devices (login sessions).
type AccountStore interface {
	CreateAccount(ctx context.Context, a Account) error // ErrExists
	GetAccount(ctx context.Context, localpart string) (*Account, error)
	// SearchAccounts finds accounts whose localpart or display name
	// contains term (case-insensitive): exact matches first, then
	// prefixes, then the rest. PasswordHash is never filled.
	SearchAccounts(ctx context.Context, term string, limit int) ([]Account, error)
	SetDisplayName(ctx context.Context, localpart, name string) error
	SetAvatarURL(ctx context.Context, localpart, url string) error
	CreateDevice(ctx context.Context, d Device) error // replaces a device with the same ID
	DeviceByTokenHash(ctx context.Context, tokenHash []byte) (*Device, error)
	ListDevices(ctx context.Context, localpart string) ([]Device, error)
	DeleteDevice(ctx context.Context, localpart, deviceID string) error
	DeleteAllDevices(ctx context.Context, localpart string) error
	TouchDevice(ctx context.Context, localpart, deviceID string, at time.Time) error
}
