//! Realistic safe code that must give no finding at all.

use super::{Safe, safe};

pub const SAFE: &[Safe] = &[
    // --- Python ---
    safe(
        "python",
        r##"def get_user(conn, user_id):
    cur = conn.cursor()
    cur.execute("SELECT id, name FROM users WHERE id = %s", (user_id,))
    return cur.fetchone()
"##,
    ),
    safe(
        "python",
        r##"import hashlib, secrets

salt = secrets.token_bytes(16)
digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 600_000)
token = secrets.token_urlsafe(32)
checksum = hashlib.sha256(data).hexdigest()
"##,
    ),
    safe(
        "python",
        r##"result = subprocess.run(
    ["git", "log", "--oneline", branch],
    capture_output=True,
    text=True,
    check=True,
)
subprocess.run(["ls", "-la", path], check=True)
"##,
    ),
    safe(
        "python",
        r##"with open(path) as f:
    config = yaml.safe_load(f)
other = yaml.load(text, Loader=yaml.SafeLoader)
"##,
    ),
    safe(
        "python",
        r##"resp = requests.get(url, timeout=10, verify=True)
resp = requests.post(url, json=payload, verify="/etc/ssl/certs/ca.pem")
resp.raise_for_status()
"##,
    ),
    safe(
        "python",
        r##"DB_PASSWORD = os.environ["DB_PASSWORD"]
api_key = os.getenv("OPENAI_API_KEY")
password = getpass.getpass("Password: ")
secret_key = settings.SECRET_KEY
if not password:
    raise ValueError("password is required")
"##,
    ),
    safe(
        "python",
        r##"model.eval()
with torch.no_grad():
    logits = model(inputs)
value = ast.literal_eval(raw)
score = evaluate(model, loader)
"##,
    ),
    safe(
        "python",
        r##"@app.route("/users/<int:user_id>")
def show(user_id):
    user = db.session.execute(text("SELECT * FROM users WHERE id = :id"), {"id": user_id}).first()
    return render_template("user.html", user=user)
"##,
    ),
    safe(
        "python",
        r##"logger.info(f"Selected {len(rows)} rows from {table_name}")
print(f"Select a file from {folder}")
print(f"Deleting {count} items from the cache")
"##,
    ),
    safe(
        "python",
        r##"with tempfile.NamedTemporaryFile(delete=False, suffix=".json") as tmp:
    tmp.write(payload)
fd, path = tempfile.mkstemp()
etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
"##,
    ),
    safe(
        "python",
        r##"with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
random.shuffle(items)
sample = random.sample(population, k=10)
"##,
    ),
    safe(
        "python",
        r##"os.system("clear")
os.makedirs(output_dir, exist_ok=True)
os.chmod(script_path, 0o755)
"##,
    ),
    // Shapes seen in real code bases that once looked insecure to a careless pattern.
    safe(
        "python",
        r##"will_verify = context.verify_mode != ssl.CERT_NONE
class MD5(HashAlgorithm):
    name = "md5"
os.chmod(target, 0o777 - mask)
# Split prompt into system (document) + user (chunk) messages.
digest = hashlib.md5(
    namespace.bytes + name,
    usedforsecurity=False,
).digest()
def __init__(self, filename=None, sign=False, verify=False):
    headers = {"maas_api_token": "Authorization"}
config = BedrockConfig(api_key="test-key", region_name="us-east-1")
"##,
    ),
    // --- JavaScript / TypeScript ---
    safe(
        "javascript",
        r##"const { execFile } = require("node:child_process");
execFile("git", ["log", "--oneline", branch], (err, stdout) => {
  if (err) throw err;
  console.log(stdout);
});
"##,
    ),
    safe(
        "javascript",
        r##"const { rows } = await pool.query("SELECT * FROM users WHERE id = $1", [id]);
const user = await knex("users").where({ email }).first();
"##,
    ),
    safe(
        "javascript",
        r##"const digest = crypto.createHash("sha256").update(data).digest("hex");
const token = crypto.randomBytes(32).toString("hex");
const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
"##,
    ),
    safe(
        "javascript",
        r##"const config = JSON.parse(body);
const re = /(\d+)-(\d+)/;
const m = re.exec(line);
while ((match = pattern.exec(text)) !== null) {
  count++;
}
"##,
    ),
    safe(
        "javascript",
        r##"const agent = new https.Agent({ ca: fs.readFileSync("ca.pem"), rejectUnauthorized: true });
setTimeout(() => refresh(), 1000);
const hue = Math.floor(Math.random() * 360);
"##,
    ),
    safe(
        "typescript",
        r##"const apiKey: string = process.env.API_KEY ?? "";
const password = process.env.DB_PASSWORD;
export const config = { apiKey, baseUrl: "https://api.example.com/v1" };
"##,
    ),
    safe(
        "typescript",
        r##"export function LoginForm() {
  const [password, setPassword] = useState("");
  return (
    <form onSubmit={submit}>
      <input type="password" name="password" placeholder="Enter your password" />
      <label htmlFor="password">Password:</label>
    </form>
  );
}
"##,
    ),
    safe(
        "javascript",
        r##"class Npm {
  async exec(cmd, args) {
    return this.#exec(cmd, args)
  }
}
const options = { strictSsl: secure ? !!opts.rejectUnauthorized : false };
"##,
    ),
    // --- Java ---
    safe(
        "java",
        r##"PreparedStatement ps = conn.prepareStatement("SELECT * FROM users WHERE email = ?");
ps.setString(1, email);
ResultSet rs = ps.executeQuery();
"##,
    ),
    safe(
        "java",
        r##"MessageDigest md = MessageDigest.getInstance("SHA-256");
SecureRandom random = new SecureRandom();
Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
String password = System.getenv("DB_PASSWORD");
"##,
    ),
    safe(
        "java",
        r##"Process p = new ProcessBuilder("git", "status").directory(repo).start();
User user = mapper.readValue(json, User.class);
logger.info("Loaded {} users from {}", users.size(), source);
"##,
    ),
    // --- Go ---
    safe(
        "go",
        r##"row := db.QueryRow("SELECT name FROM users WHERE id = $1", id)
if err := row.Scan(&name); err != nil {
	return err
}
fmt.Printf("user %s\n", name)
"##,
    ),
    safe(
        "go",
        r##"sum := sha256.Sum256(data)
cfg := &tls.Config{MinVersion: tls.VersionTLS12}
b := make([]byte, 32)
if _, err := rand.Read(b); err != nil {
	return err
}
"##,
    ),
    safe(
        "go",
        r##"out, err := exec.Command("git", "rev-parse", "HEAD").Output()
password := os.Getenv("DB_PASSWORD")
"##,
    ),
    // --- C ---
    safe(
        "c",
        r##"char buf[128];
if (fgets(buf, sizeof buf, stdin) == NULL)
    return 1;
snprintf(path, sizeof path, "%s/%s", dir, name);
strncpy(dst, src, sizeof dst - 1);
printf("%s\n", buf);
fprintf(stderr, "error: %s\n", msg);
"##,
    ),
    safe(
        "c",
        r##"int main(void) {
    system("clear");
    if (system(NULL) == 0)
        return 1;
    scanf("%63s", name);
    return 0;
}
"##,
    ),
    // --- PHP ---
    safe(
        "php",
        r##"<?php
$stmt = $pdo->prepare("SELECT * FROM users WHERE email = ?");
$stmt->execute([$email]);
$hash = password_hash($password, PASSWORD_DEFAULT);
"##,
    ),
    safe(
        "php",
        r##"<?php
$out = shell_exec("ls -la " . escapeshellarg($dir));
$data = json_decode($_POST['payload'], true);
$prefs = unserialize($raw, ['allowed_classes' => false]);
echo sprintf("Hello %s", htmlspecialchars($name));
"##,
    ),
    // --- Ruby ---
    safe(
        "ruby",
        r##"system("tar", "-xzf", archive)
users = User.where(name: params[:name])
data = JSON.parse(body)
puts "Hello #{name}"
"##,
    ),
    safe(
        "ruby",
        r##"digest = Digest::SHA256.hexdigest(data)
token = SecureRandom.hex(32)
line = gets.chomp
"##,
    ),
    // --- Shell ---
    safe(
        "shell",
        r##"set -euo pipefail
curl -fsSL https://example.com/data.json -o data.json
chmod 755 deploy.sh
TMPDIR=$(mktemp -d)
wget -q https://example.com/file.tar.gz
"##,
    ),
    safe(
        "dockerfile",
        r##"FROM python:3.12-slim
RUN pip install --no-cache-dir -r requirements.txt
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "app"]
"##,
    ),
    // --- Prose around code ---
    safe(
        "markdown",
        r##"To evaluate the model, call `model.eval()` before inference. Prefer hashlib.sha256
over md5 for integrity checks, and use parameterised queries such as
`cursor.execute(sql, params)` instead of building SQL strings.
"##,
    ),
];
