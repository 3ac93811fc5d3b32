// deny-revoked: a CloudFront Function (runtime cloudfront-js-2.0) for
// the viewer-request event of the cache behaviour that serves the
// reports. It answers 403 to a traced link (links.trace) whose token is
// on the deny list that `reportmailer revoke` writes: a key in the
// CloudFront KeyValueStore associated with this function.
//
// It needs: this function published and attached to the behaviour as
// its viewer-request function, and the KeyValueStore named by
// links.cloudfront.key_value_store_arn associated with it. Without
// both, revoke writes the deny list and nothing reads it.
//
// It reads only whether a token is a key (exists); the value, the
// links' latest expiry, is for `revoke -prune`.
//
// It runs (and is billed) on every request, cache hits included, so a revoked link
// stops working once the KeyValueStore has propagated (seconds), even
// for an object in the cache. It changes nothing in the request: the
// signed URL is checked by CloudFront as sent.
import cf from 'cloudfront';

const kvs = cf.kvs();

// The query parameter that carries the token (linktoken.Param).
const PARAM = 'rmt';

async function handler(event) {
    const request = event.request;
    const q = request.querystring[PARAM];
    if (!q) {
        // An untraced link: only its signature decides.
        return request;
    }
    // A URL with the parameter twice has every value checked: none may
    // be revoked. (Its signature fails anyway: the token is signed.)
    const tokens = q.multiValue ? q.multiValue.map(function (v) { return v.value; }) : [q.value];
    for (const token of tokens) {
        let revoked = false;
        try {
            revoked = await kvs.exists(token);
        } catch (err) {
            // Fail open: the link still needs a valid, unexpired
            // signature, and a deny list that cannot be read must not
            // stop every download.
            console.log('deny list not read: ' + err);
        }
        if (revoked) {
            return {
                statusCode: 403,
                statusDescription: 'Forbidden',
                headers: { 'cache-control': { value: 'no-store' } },
            };
        }
    }
    return request;
}
