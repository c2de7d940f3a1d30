"""What each column of `normalized_users` and the `users` table holds (shown in the UI's column
schema). Source: the Random User API 1.4 documentation (https://randomuser.me/documentation) and
the recorded answers in ../shared/fixtures/randomuser."""

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "partition_date": "The day (UTC, YYYY-MM-DD) whose partition fetched the user; also the API seed",
    "user_id": "The API's login.uuid: the user's identity across re-runs of a day",
    "email": "The user's email (login.email); unique within a day, the first occurrence kept",
    "username": "login.username",
    "title": "name.title, e.g. Mr, Ms, Mademoiselle",
    "first_name": "name.first",
    "last_name": "name.last",
    "gender": "gender as the API sends it (male, female)",
    "date_of_birth": "dob.date, an ISO 8601 timestamp with time zone, as sent",
    "age": "dob.age, in years, as the API computed it",
    "registered_at": "registered.date, an ISO 8601 timestamp with time zone, as sent",
    "phone": "phone, in the country's own format",
    "cell": "cell, in the country's own format",
    "street_number": "location.street.number",
    "street_name": "location.street.name",
    "city": "location.city",
    "state": "location.state",
    "country": "location.country",
    "postcode": "location.postcode, always text (leading zeros and letters kept)",
    "latitude": "location.coordinates.latitude, degrees",
    "longitude": "location.coordinates.longitude, degrees",
    "timezone_offset": "location.timezone.offset, e.g. +5:30",
    "nationality": "nat, a two-letter code (US, GB, FR, ...)",
    "id_name": "id.name, the national identifier's kind (SSN, NINO, ...); may be empty",
    "id_value": "id.value; may be empty",
    "password_salt": "login.salt: the API's salt (the plaintext password is never stored)",
    "password_sha256": "login.sha256: the salted SHA-256 of the password, hex",
    "picture_url": "picture.large, the URL of the user's large picture",
}
