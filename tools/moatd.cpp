// moatd: the mail gateway daemon (placeholder until the server is wired).
int main() { return 0; }
