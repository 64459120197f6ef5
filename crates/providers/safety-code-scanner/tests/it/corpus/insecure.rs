//! Snippets every one of which must give exactly its listed rule ids.

use super::{Insecure, insecure};

pub const INSECURE: &[Insecure] = &[
    // --- Python ---
    insecure(
        "python",
        r##"import os

def ping(host):
    os.system(f"ping -c 1 {host}")
"##,
        &["python-shell-injection"],
    ),
    insecure(
        "python",
        r##"import subprocess

def search(pattern, path):
    return subprocess.run(
        f"grep -rn {pattern} {path}",
        shell=True,
        capture_output=True,
        text=True,
    )
"##,
        &["python-shell-injection"],
    ),
    insecure(
        "python",
        r##"cmd = "convert " + upload.filename + " thumb.png"
subprocess.call(cmd, shell=True)
"##,
        &["python-shell-injection"],
    ),
    insecure(
        "python",
        r##"@app.route("/calc")
def calc():
    result = eval(request.args.get("expr"))
    return str(result)
"##,
        &["eval-injection"],
    ),
    insecure(
        "python",
        r##"def run_plugin(user_code):
    exec(user_code, {"__builtins__": {}})
"##,
        &["eval-injection"],
    ),
    // The snippet of upstream's integration test.
    insecure(
        "python",
        r##"
    Here is an example of code that hashes a password using MD5:

    ```
    import hashlib
    password = 'securepassword123'.encode()
    hashed_password = hashlib.md5(password).hexdigest()
    print("Insecure hashed password:", hashed_password)
    ```
    "##,
        &["hardcoded-credential", "weak-hash-md5"],
    ),
    insecure(
        "python",
        r##"def fingerprint(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()
"##,
        &["weak-hash-sha1"],
    ),
    insecure(
        "python",
        r##"def find_user(conn, name):
    cursor = conn.cursor()
    cursor.execute(f"SELECT * FROM users WHERE name = '{name}'")
    return cursor.fetchall()
"##,
        &["sql-injection"],
    ),
    insecure(
        "python",
        r##"cur.execute("DELETE FROM items WHERE id = %s" % item_id)
"##,
        &["sql-injection"],
    ),
    insecure(
        "python",
        r##"query = "SELECT * FROM accounts WHERE owner = '" + owner + "'"
cursor.execute(query)
"##,
        &["sql-injection"],
    ),
    insecure(
        "python",
        r##"query = f"""
    SELECT id, total
    FROM orders
    WHERE customer_id = {customer_id}
"""
rows = conn.execute(query).fetchall()
"##,
        &["sql-injection"],
    ),
    insecure(
        "python",
        r##"@app.post("/restore")
def restore():
    state = pickle.loads(request.data)
    return jsonify(state)
"##,
        &["python-pickle-load"],
    ),
    insecure(
        "python",
        r##"with open("config.yml") as f:
    config = yaml.load(f)
"##,
        &["unsafe-yaml-load"],
    ),
    insecure(
        "python",
        r##"resp = requests.get("https://internal.service/api/health", verify=False, timeout=5)
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "python",
        r##"import ssl, urllib.request
ctx = ssl._create_unverified_context()
urllib.request.urlopen(url, context=ctx)
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "python",
        r##"import random, string
reset_token = "".join(random.choice(string.ascii_letters) for _ in range(32))
"##,
        &["weak-random-for-secret"],
    ),
    insecure(
        "python",
        r##"path = tempfile.mktemp(suffix=".csv")
with open(path, "w") as out:
    out.write(report)
"##,
        &["insecure-temp-file"],
    ),
    insecure(
        "python",
        r##"AWS_ACCESS_KEY_ID = "AKIAZ7Q3F4R2D8K1M0PX"
AWS_SECRET_ACCESS_KEY = "h8Jk2Lm9Qr4sT6vW1xY3zA5bC7dE9fG0hI2jK4lM"
s3 = boto3.client("s3", aws_access_key_id=AWS_ACCESS_KEY_ID)
"##,
        &["hardcoded-aws-access-key", "hardcoded-credential"],
    ),
    insecure(
        "python",
        r##"PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB
aFDrBz9vFqU4yqSX1uT4aB7kQJbqvV1YkM8eHzjUu0mVYx1sF3nqN2gDqQ==
-----END RSA PRIVATE KEY-----"""
"##,
        &["hardcoded-private-key"],
    ),
    insecure(
        "python",
        r##"from Crypto.Cipher import AES
cipher = AES.new(key, AES.MODE_ECB)
"##,
        &["weak-cipher"],
    ),
    insecure(
        "python",
        r##"os.chmod("/srv/app/uploads", 0o777)
"##,
        &["world-writable-permissions"],
    ),
    // --- JavaScript / TypeScript ---
    insecure(
        "javascript",
        r##"const { exec } = require("child_process");
app.get("/ls", (req, res) => {
  exec(`ls -la ${req.query.dir}`, (err, stdout) => res.send(stdout));
});
"##,
        &["node-shell-injection"],
    ),
    insecure(
        "javascript",
        r##"const log = child_process.execSync("git log --oneline " + branch).toString();
require("node:child_process").exec("rm -rf " + req.query.path);
"##,
        &["node-shell-injection"],
    ),
    insecure(
        "javascript",
        r##"app.post("/calc", (req, res) => {
  const result = eval(req.body.expression);
  res.json({ result });
});
"##,
        &["eval-injection"],
    ),
    insecure(
        "javascript",
        r##"const handler = new Function("event", "context", userSource);
"##,
        &["eval-injection"],
    ),
    insecure(
        "javascript",
        r##"const crypto = require("crypto");
const hash = crypto.createHash("md5").update(password).digest("hex");
"##,
        &["weak-hash-md5"],
    ),
    insecure(
        "javascript",
        r##"process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
const res = await fetch(url);
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "javascript",
        r##"const req = https.request({ host, port: 443, path: "/", rejectUnauthorized: false });
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "typescript",
        r##"export async function orders(req: Request): Promise<Order[]> {
  const rows = await db.query(`SELECT * FROM orders WHERE customer = '${req.params.id}'`);
  return rows as Order[];
}
"##,
        &["sql-injection"],
    ),
    insecure(
        "typescript",
        r##"const apiKey: string = "sk_live_51Hq8vK2eZvKYlo2C0aBcDeFgHiJkLmNoPq";
const stripe = new Stripe(apiKey);
"##,
        &["hardcoded-credential", "hardcoded-api-token"],
    ),
    insecure(
        "javascript",
        r##"const octokit = new Octokit({ auth: "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5" });
"##,
        &["hardcoded-api-token"],
    ),
    // --- Java ---
    insecure(
        "java",
        r##"public void ping(String host) throws IOException {
    Process p = Runtime.getRuntime().exec("ping -c 1 " + host);
}
"##,
        &["java-command-injection"],
    ),
    insecure(
        "java",
        r##"ProcessBuilder pb = new ProcessBuilder("/bin/sh", "-c", "tar -xzf " + archive);
"##,
        &["java-command-injection"],
    ),
    insecure(
        "java",
        r##"Statement stmt = conn.createStatement();
ResultSet rs = stmt.executeQuery("SELECT * FROM users WHERE name = '" + name + "'");
"##,
        &["sql-injection"],
    ),
    insecure(
        "java",
        r##"MessageDigest md = MessageDigest.getInstance("MD5");
byte[] digest = md.digest(password.getBytes(StandardCharsets.UTF_8));
MessageDigest legacy = MessageDigest.getInstance("SHA-1");
"##,
        &["weak-hash-md5", "weak-hash-sha1"],
    ),
    insecure(
        "java",
        r##"try (ObjectInputStream in = new ObjectInputStream(socket.getInputStream())) {
    Command cmd = (Command) in.readObject();
    cmd.run();
}
"##,
        &["java-object-deserialization"],
    ),
    insecure(
        "java",
        r##"Cipher cipher = Cipher.getInstance("DES/ECB/PKCS5Padding");
cipher.init(Cipher.ENCRYPT_MODE, key);
"##,
        &["weak-cipher"],
    ),
    insecure(
        "java",
        r##"private static final String DB_PASSWORD = "Pr0duction!Pass";
"##,
        &["hardcoded-credential"],
    ),
    // --- Go ---
    insecure(
        "go",
        r##"import "crypto/md5"

func hashPassword(password string) [16]byte {
	return md5.Sum([]byte(password))
}
"##,
        &["weak-hash-md5"],
    ),
    insecure(
        "go",
        r##"tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
client := &http.Client{Transport: tr}
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "go",
        r##"rows, err := db.Query(fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", name))
if err != nil {
	return err
}
"##,
        &["sql-injection"],
    ),
    insecure(
        "go",
        r##"out, err := exec.Command("sh", "-c", "tar -xzf "+archive).CombinedOutput()
"##,
        &["go-shell-injection"],
    ),
    // --- C ---
    insecure(
        "c",
        r##"int main(void) {
    char name[64];
    gets(name);
    return 0;
}
"##,
        &["c-unbounded-input"],
    ),
    insecure(
        "c",
        r##"void copy_arg(char *dest, char **argv) {
    strcpy(dest, argv[1]);
}
"##,
        &["c-unsafe-string-function"],
    ),
    insecure(
        "c",
        r##"char cmd[256];
sprintf(cmd, "convert %s out.png", filename);
system(cmd);
"##,
        &["c-unsafe-string-function", "system-call-injection"],
    ),
    insecure(
        "c",
        r##"void log_message(const char *user_input) {
    printf(user_input);
}
"##,
        &["c-format-string"],
    ),
    insecure(
        "c",
        r##"char word[32];
scanf("%s", word);
"##,
        &["c-unbounded-input"],
    ),
    insecure(
        "c",
        r##"unsigned char digest[MD5_DIGEST_LENGTH];
MD5((unsigned char *)data, len, digest);
curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
"##,
        &["weak-hash-md5", "tls-verification-disabled"],
    ),
    // --- PHP ---
    insecure(
        "php",
        r##"<?php
$output = shell_exec("ping -c 1 " . $_GET['host']);
echo "<pre>$output</pre>";
"##,
        &["php-shell-injection"],
    ),
    insecure(
        "php",
        r##"<?php
$cmd = $_POST['cmd'];
system($cmd);
"##,
        &["php-shell-injection"],
    ),
    insecure(
        "php",
        r##"<?php eval($_POST['code']); ?>
"##,
        &["eval-injection"],
    ),
    insecure(
        "php",
        r##"<?php
$prefs = unserialize($_COOKIE['prefs']);
"##,
        &["php-unserialize"],
    ),
    insecure(
        "php",
        r##"<?php
$hash = md5($password);
$result = mysqli_query($conn, "SELECT * FROM users WHERE id = $id");
"##,
        &["weak-hash-md5", "sql-injection"],
    ),
    insecure(
        "php",
        r##"<?php
curl_setopt($ch, CURLOPT_SSL_VERIFYPEER, false);
"##,
        &["tls-verification-disabled"],
    ),
    // --- Ruby ---
    insecure(
        "ruby",
        r##"def extract
  system("tar -xzf #{params[:file]}")
end
"##,
        &["ruby-shell-injection"],
    ),
    insecure(
        "ruby",
        r##"listing = `ls -la #{dir}`
"##,
        &["ruby-shell-injection"],
    ),
    insecure(
        "ruby",
        r##"session = Marshal.load(Base64.decode64(cookies[:session]))
"##,
        &["ruby-marshal-load"],
    ),
    insecure(
        "ruby",
        r##"users = User.where("name = '#{params[:name]}'")
"##,
        &["sql-injection"],
    ),
    insecure(
        "ruby",
        r##"digest = Digest::MD5.hexdigest(password)
http.verify_mode = OpenSSL::SSL::VERIFY_NONE
"##,
        &["weak-hash-md5", "tls-verification-disabled"],
    ),
    insecure(
        "ruby",
        r##"result = eval(params[:expression])
"##,
        &["eval-injection"],
    ),
    // --- C# ---
    insecure(
        "csharp",
        r##"var formatter = new BinaryFormatter();
var state = (SessionState)formatter.Deserialize(stream);
"##,
        &["dotnet-unsafe-deserialization"],
    ),
    // --- Shell ---
    insecure(
        "shell",
        r##"#!/bin/sh
curl -k https://artifacts.internal/install.sh -o install.sh
sh install.sh
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "shell",
        r##"export NODE_TLS_REJECT_UNAUTHORIZED=0
npm install
"##,
        &["tls-verification-disabled"],
    ),
    insecure(
        "shell",
        r##"mkdir -p /var/www/uploads
chmod -R 777 /var/www/uploads
"##,
        &["world-writable-permissions"],
    ),
    insecure(
        "shell",
        r##"wget --no-check-certificate https://mirror.internal/pkg.tar.gz
git config --global http.sslVerify false
"##,
        &["tls-verification-disabled"],
    ),
];
