// The `dape` command (placeholder until the subcommands land).
int main() { return 0; }
