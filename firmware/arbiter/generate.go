package arbiter

//go:generate go tool stringer -type=Type,Mode,Role,Data,Reason,EventKind -linecomment -output=names_string.go
