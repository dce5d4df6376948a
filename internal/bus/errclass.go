package bus

import "github.com/eimis-hub/eimis/internal/errclass"

func init() { errclass.Register(ErrTerminal) }
